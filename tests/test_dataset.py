"""Dataset layer: round trips in the three img2dataset formats, and every kind of bad input."""

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataio.errors import DataError, UsageError
from dataio.manifest import read_manifest
from dataio.reader import open_dataset
from dataio.writer import Keep, Remove, write_dataset
from tar_files import tar_members, write_tar

ROOT = Path(__file__).resolve().parents[1]


def _by_key(dataset):
    return {s.key: s for s in dataset.samples()}


def _decide_every_third(sample):
    number = int(sample.key)
    if number % 3 == 0:
        return Remove("test: every third key")
    if number % 3 == 1:
        return Keep(captions=sample.captions + [f"extra caption {number}"], reason="test: extra caption")
    return Keep()


@pytest.mark.parametrize("fmt", ["webdataset", "parquet", "files"])
def test_round_trip_keeps_bytes_keys_captions_and_metadata(make_synthetic, tmp_path, fmt):
    source = make_synthetic(n=60, fmt=fmt, inject=0.1, seed=1)
    dataset = open_dataset(source)
    assert dataset.format == fmt
    original = _by_key(dataset)
    assert len(original) == 60 and not dataset.skipped

    result = write_dataset(dataset, tmp_path / "copy", _decide_every_third, progress=False)
    copy = open_dataset(tmp_path / "copy")
    assert copy.format == fmt and copy.shards == dataset.shards
    written = _by_key(copy)

    removed = {k for k in original if int(k) % 3 == 0}
    assert set(written) == set(original) - removed
    for key, sample in written.items():
        before = original[key]
        assert sample.image == before.image  # byte for byte, never re-encoded
        assert sample.caption == before.caption
        expected_meta = dict(before.meta)
        if int(key) % 3 == 1:
            assert sample.captions == before.captions + [f"extra caption {int(key)}"]
            expected_meta["captions"] = sample.captions
        else:
            assert sample.captions == before.captions
        assert sample.meta == expected_meta

    manifest = read_manifest(tmp_path / "copy")
    assert sorted(manifest.key) == sorted(original)
    assert result.counts["removed"] == len(removed)
    assert result.counts["kept"] + result.counts["changed"] + result.counts["removed"] + result.counts["unreadable"] == 60
    assert set(manifest[manifest.action == "removed"].key) == removed


@pytest.mark.parametrize("fmt", ["webdataset", "files"])
def test_metadata_parquet_and_stats_describe_the_written_shards(make_synthetic, tmp_path, fmt):
    dataset = open_dataset(make_synthetic(n=60, fmt=fmt, inject=0.1, seed=1))
    write_dataset(dataset, tmp_path / "copy", _decide_every_third, progress=False)
    copy = open_dataset(tmp_path / "copy")
    for shard in copy.shards:
        table = pq.read_table(tmp_path / "copy" / f"{shard}.parquet")
        in_shard = {s.key for s in copy.samples() if s.shard == shard}
        success = {k for k, st in zip(table.column("key").to_pylist(), table.column("status").to_pylist()) if st == "success"}
        assert success == in_shard
        assert set(pq.read_schema(dataset.path / f"{shard}.parquet").names) <= set(table.column_names)
        stats = json.loads((tmp_path / "copy" / f"{shard}_stats.json").read_text())
        assert stats["successes"] == len(in_shard)
        assert stats["count"] == table.num_rows


def test_writes_are_atomic_and_refuse_to_clobber(make_synthetic, tmp_path):
    dataset = open_dataset(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1))
    write_dataset(dataset, tmp_path / "copy", lambda s: Keep(), progress=False)
    with pytest.raises(UsageError, match="already exists"):
        write_dataset(dataset, tmp_path / "copy", lambda s: Keep(), progress=False)

    def explode(sample):
        raise RuntimeError("decide failed half way")

    with pytest.raises(RuntimeError):
        write_dataset(dataset, tmp_path / "copy", explode, overwrite=True, progress=False)
    # the failed rewrite left the earlier copy whole and no temporary folders behind
    assert len(list(open_dataset(tmp_path / "copy").samples())) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


# ---- webdataset: kept members copied as stored -------------------------------------------------


def _stored_members(path) -> dict:
    """name -> the member exactly as the tar holds it: its pax or long-name entries, header, data, padding."""
    data = Path(path).read_bytes()
    with tarfile.open(path) as archive:
        return {m.name: data[m.offset:m.offset_data + -(-m.size // 512) * 512] for m in archive.getmembers() if m.isfile()}


def _member_text(path, name) -> str:
    with tarfile.open(path) as archive:
        return archive.extractfile(name).read().decode("utf-8")


def test_webdataset_copy_keeps_kept_members_byte_for_byte(make_synthetic, tmp_path):
    source = make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1)
    write_dataset(open_dataset(source), tmp_path / "copy", _decide_every_third, progress=False, verify_images=False)
    checked = {"unchanged": 0, "image of a changed sample": 0, "changed": 0}
    for shard in sorted(source.glob("*.tar")):
        before, after = _stored_members(shard), _stored_members(tmp_path / "copy" / shard.name)
        # img2dataset writes a pax entry before every member: the copy must carry them along
        assert all(stored[156:157] == tarfile.XHDTYPE for stored in before.values())
        for name, stored in before.items():
            number, ext = int(name.split(".")[0]), name.split(".", 1)[1]
            if number % 3 == 0:
                assert name not in after
            elif number % 3 == 2:
                assert after[name] == stored
                checked["unchanged"] += 1
            elif ext not in ("txt", "json"):
                assert after[name] == stored
                checked["image of a changed sample"] += 1
            elif ext == "json":
                captions = json.loads(_member_text(tmp_path / "copy" / shard.name, name))["captions"]
                assert captions[-1] == f"extra caption {number}" and after[name] != stored
                checked["changed"] += 1
    assert min(checked.values()) > 0, checked


def test_tarfile_and_webdataset_read_the_copy(make_synthetic, tmp_path):
    import webdataset as wds

    source = make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1)
    original = _by_key(open_dataset(source))
    write_dataset(open_dataset(source), tmp_path / "copy", _decide_every_third, progress=False, verify_images=False)
    tars = sorted((tmp_path / "copy").glob("*.tar"))
    for tar in tars:
        data = tar.read_bytes()
        with tarfile.open(tar) as archive:
            last = archive.getmembers()[-1]
        end_of_last = last.offset_data + -(-last.size // 512) * 512
        assert data[end_of_last:end_of_last + 1024] == bytes(1024) and len(data) % tarfile.RECORDSIZE == 0

    samples = list(wds.WebDataset([str(t) for t in tars], shardshuffle=False))
    kept = {k for k in original if int(k) % 3 != 0}
    assert sorted(s["__key__"] for s in samples) == sorted(kept)
    for sample in samples:
        before = original[sample["__key__"]]
        assert sample[before.image_ext] == before.image
        assert sample["txt"].decode("utf-8") == before.caption
        assert json.loads(sample["json"])["key"] == before.key


@pytest.mark.parametrize("window", [700, 2000, 5000, 1 << 20])
def test_tar_members_match_tarfile_whatever_the_read_window(make_synthetic, monkeypatch, window):
    """A window smaller than any member makes every header and member straddle a refill."""
    from dataio import formats

    monkeypatch.setattr(formats, "TAR_WINDOW", window)
    shard = sorted(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1).glob("*.tar"))[0]
    stored = _stored_members(shard)
    with tarfile.open(shard) as archive:
        expected = [(m.name, archive.extractfile(m).read(), stored[m.name]) for m in archive.getmembers() if m.isfile()]
    with open(shard, "rb") as stream:
        assert list(formats.tar_members(stream)) == expected


def _member(name: str, data: bytes, fmt, kind=tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = len(data), kind, 0o644
    return info.tobuf(fmt, "utf-8", "surrogateescape") + data + bytes(-len(data) % 512)


def _png(color) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_long_names_pax_records_and_folders_are_copied_with_their_members(tmp_path):
    """GNU long-name entries, pax path records, folder entries and a global pax header, by hand."""
    names = {
        "gnu": ("k" * 110 + "000000000", tarfile.GNU_FORMAT),  # a name past 100 bytes: a GNU 'L' entry
        "pax": ("sub/caf\u00e9-000000001", tarfile.PAX_FORMAT),  # non-ASCII: a pax 'path' record
        "plain": ("000000002", tarfile.GNU_FORMAT),
        "changed": ("x" * 120 + "000000003", tarfile.PAX_FORMAT),  # a long name in a pax record
    }
    archive = tarfile.TarInfo.create_pax_global_header({"comment": "made by hand"})
    archive += _member("sub", b"", tarfile.GNU_FORMAT, tarfile.DIRTYPE)
    for role, (stem, fmt) in names.items():
        for ext, data in (("png", _png(role == "changed" and "red" or "blue")), ("txt", f"a {role} sample".encode()),
                          ("json", json.dumps({"role": role}).encode())):
            archive += _member(f"{stem}.{ext}", data, fmt)
    archive += bytes(1024)
    source = tmp_path / "handmade"
    source.mkdir()
    (source / "00000.tar").write_bytes(archive + bytes(-len(archive) % tarfile.RECORDSIZE))

    def decide(sample):
        role = sample.meta["role"]
        return Keep(caption="a new caption", reason="test") if role == "changed" else Keep()

    result = write_dataset(open_dataset(source), tmp_path / "copy", decide, progress=False)
    assert result.counts == {"kept": 3, "changed": 1, "removed": 0, "unreadable": 0}
    before, after = _stored_members(source / "00000.tar"), _stored_members(tmp_path / "copy" / "00000.tar")
    for role, (stem, _) in names.items():
        for ext in ("png", "txt", "json"):
            name = f"{stem}.{ext}"
            if role != "changed" or ext == "png":
                assert after[name] == before[name], name
    changed_stem = names["changed"][0]
    assert _member_text(tmp_path / "copy" / "00000.tar", f"{changed_stem}.txt") == "a new caption"
    assert json.loads(_member_text(tmp_path / "copy" / "00000.tar", f"{changed_stem}.json"))["role"] == "changed"
    copy = _by_key(open_dataset(tmp_path / "copy"))
    assert copy[changed_stem].caption == "a new caption"
    assert sorted(copy) == sorted(stem.rsplit("/", 1)[-1] for stem, _ in names.values())


def test_verify_images_false_decodes_nothing(make_synthetic, tmp_path, monkeypatch):
    import dataio.reader

    def refuse(data):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(dataio.reader, "image_is_decodable", refuse)
    source = make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1)
    result = write_dataset(open_dataset(source), tmp_path / "copy", _decide_every_third, progress=False,
                           verify_images=False)
    assert result.counts["unreadable"] == 0 and result.counts["removed"] == 20
    with pytest.raises(AssertionError, match="decoded"):
        write_dataset(open_dataset(source), tmp_path / "again", _decide_every_third, progress=False)


def test_shard_parquet_reuses_the_input_rows_and_keeps_failed_downloads(make_synthetic, tmp_path):
    folder = tmp_path / "with_failure"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    first = sorted(folder.glob("*.parquet"))[0]
    table = pq.read_table(first)
    failed = pa.Table.from_pylist([{"key": "999999999", "status": "failed_to_download", "error_message": "HTTP 404",
                                    "url": "http://127.0.0.1/missing.png"}], schema=table.schema)
    pq.write_table(pa.concat_tables([table, failed]), first)
    input_rows = {row["key"]: row for row in table.to_pylist()}

    write_dataset(open_dataset(folder), tmp_path / "copy", _decide_every_third, progress=False, verify_images=False)
    written = pq.read_table(tmp_path / "copy" / first.name).to_pylist()
    by_key = {row["key"]: row for row in written}
    assert by_key["999999999"]["status"] == "failed_to_download"
    for key, row in by_key.items():
        if key == "999999999":
            continue
        number = int(key)
        assert number % 3 != 0
        expected = dict(input_rows[key])
        if number % 3 == 1:
            expected["captions"] = input_rows[key]["captions"] + [f"extra caption {number}"]
        assert row == expected
    assert [row["key"] for row in written] == [k for k in list(input_rows) + ["999999999"] if k in by_key]
    stats = json.loads((tmp_path / "copy" / first.name.replace(".parquet", "_stats.json")).read_text())
    assert stats["failed_to_download"] == 1 and stats["count"] == len(written) == stats["successes"] + 1


# ---- bad input -------------------------------------------------------------------------------


@pytest.fixture
def damaged(make_synthetic, tmp_path):
    """A webdataset copy whose first shard has one sample broken in each way a download can break."""
    folder = tmp_path / "damaged"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    first = sorted(folder.glob("*.tar"))[0]
    members = tar_members(first)
    keys = list(dict.fromkeys(name.split(".")[0] for name, _ in members))
    broken = {
        keys[0]: "corrupt image",
        keys[1]: "zero-byte image",
        keys[2]: "missing caption",
        keys[3]: "caption is not valid UTF-8",
    }
    rewritten = []
    for name, data in members:
        key, ext = name.split(".", 1)
        if key == keys[0] and ext in ("jpg", "png"):
            data = data[:20] + b"\x00garbage" * 4
        elif key == keys[1] and ext in ("jpg", "png"):
            data = b""
        elif key == keys[2] and ext == "txt":
            continue
        elif key == keys[3] and ext == "txt":
            data = b"caf\xe9 \xff\xfe"
        rewritten.append((name, data))
    # a duplicate: the second shard carries the first shard's fifth sample again
    second = sorted(folder.glob("*.tar"))[1]
    duplicate = [(n, d) for n, d in members if n.split(".")[0] == keys[4]]
    write_tar(first, rewritten)
    write_tar(second, tar_members(second) + duplicate)
    return folder, broken, keys[4]


def test_bad_samples_are_skipped_and_counted_with_reasons(damaged):
    folder, broken, duplicate_key = damaged
    dataset = open_dataset(folder)
    good = list(dataset.samples())
    reasons = dict(dataset.skipped)
    assert len(good) == 60 - len(broken)
    for key, expected in broken.items():
        assert expected in reasons[key]
    assert any(key == duplicate_key and "duplicate key" in reason for key, reason in dataset.skipped)
    assert len(dataset.skipped) == len(broken) + 1


def test_manifest_records_unreadable_samples(damaged, tmp_path):
    folder, broken, _ = damaged
    result = write_dataset(open_dataset(folder), tmp_path / "out", lambda s: Keep(), progress=False)
    manifest = read_manifest(tmp_path / "out")
    unreadable = manifest[manifest.action == "unreadable"]
    assert set(broken) <= set(unreadable.key)
    assert result.counts["unreadable"] == len(broken) + 1
    assert result.counts["kept"] == 60 - len(broken)


def test_truncated_tar_keeps_what_precedes_the_cut_and_names_the_rest(make_synthetic, tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    first = sorted(folder.glob("*.tar"))[0]
    listed = {k for k, st in zip(*pq.read_table(first.with_suffix(".parquet"), columns=["key", "status"]).to_pydict().values()) if st == "success"}
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])
    dataset = open_dataset(folder)
    read_keys = {s.key for s in dataset.samples()}
    lost = listed - read_keys
    assert 0 < len(lost) < len(listed)
    skipped_keys = {k for k, _ in dataset.skipped}
    assert lost <= skipped_keys
    assert all("truncated" in reason for key, reason in dataset.skipped if key in lost)


def _cut_before_sample(path, sample_index: int) -> list:
    """Cut the tar where the sample_index-th sample's first member starts; the keys before it, in order."""
    with tarfile.open(path) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
    keys = list(dict.fromkeys(m.name.split(".")[0] for m in members))
    first_member = next(m for m in members if m.name.split(".")[0] == keys[sample_index])
    path.write_bytes(path.read_bytes()[:first_member.offset])
    return keys[:sample_index]


def test_tar_cut_at_a_member_boundary_is_detected_and_counted(make_synthetic, tmp_path):
    folder = tmp_path / "cut"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    first = sorted(folder.glob("*.tar"))[0]
    listed = [k for k, st in zip(*pq.read_table(first.with_suffix(".parquet"), columns=["key", "status"]).to_pydict().values())
              if st == "success"]
    before_cut = _cut_before_sample(first, 5)
    result = write_dataset(open_dataset(folder), tmp_path / "out", lambda s: Keep(), progress=False)
    manifest = read_manifest(tmp_path / "out").set_index("key")
    # no end-of-archive blocks: the last sample before the cut may lack members, so it counts as cut too
    assert list(manifest.loc[before_cut[:4], "action"]) == ["kept"] * 4
    lost = [k for k in listed if k not in before_cut[:4]]
    assert all(manifest.loc[lost, "action"] == "unreadable")
    assert all("truncated" in reason for reason in manifest.loc[lost, "reason"])
    assert result.counts["unreadable"] == len(lost) and result.counts["kept"] == 60 - len(lost)


def test_a_damaged_header_is_detected_and_the_rest_of_the_shard_counted(make_synthetic, tmp_path):
    folder = tmp_path / "damaged_header"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    first = sorted(folder.glob("*.tar"))[0]
    with tarfile.open(first) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
    target = members[30]
    data = bytearray(first.read_bytes())
    header = target.offset_data - 512  # the member's own header, after its pax entry
    data[header] ^= 0x01  # one bit of the name: the checksum no longer holds
    first.write_bytes(bytes(data))
    keys = list(dict.fromkeys(m.name.split(".")[0] for m in members))
    damaged_key = target.name.split(".")[0]
    assert keys.index(damaged_key) == 10
    dataset = open_dataset(folder)
    read = [s.key for s in dataset.samples() if s.shard == "00000"]
    skipped = dict(dataset.skipped)
    # the sample before the damaged header may have lost members to it: it is counted with the rest
    assert read == keys[:9]
    assert "bad checksum" in skipped[damaged_key] and "truncated" in skipped[keys[9]]
    assert sorted(skipped) == sorted(keys[9:])


def _absent(root):
    return root / "absent"


def _empty(root):
    (root / "empty").mkdir()
    return root / "empty"


def _unrelated(root):
    (root / "other").mkdir()
    (root / "other" / "notes.txt").write_text("x")
    return root / "other"


def _a_file(root):
    (root / "a_file.txt").write_text("x")
    return root / "a_file.txt"


@pytest.mark.parametrize("setup, message", [
    (_absent, "no such folder"),
    (_empty, "empty"),
    (_unrelated, "not an img2dataset output folder"),
    (_a_file, "not a folder"),
])
def test_unusable_folders_raise_one_clear_error(tmp_path, setup, message):
    with pytest.raises(DataError, match=message):
        open_dataset(setup(tmp_path))


def test_cli_reports_bad_folder_in_one_line_with_exit_code_2(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "inspect", "--data", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0 and "nope" in run.stderr


def test_cli_rejects_a_bad_option_with_exit_code_2():
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "inspect", "--no-such-option"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "Traceback" not in run.stderr


def test_inspect_counts_skipped_samples(damaged):
    folder, broken, _ = damaged
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "inspect", "--data", str(folder)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert f"samples            {60 - len(broken)}" in run.stdout
    assert f"skipped (bad)      {len(broken) + 1}" in run.stdout
    assert "webdataset format" in run.stdout

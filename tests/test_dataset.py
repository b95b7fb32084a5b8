"""Dataset layer: round trips in the three img2dataset formats, and every kind of bad input."""

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataio.errors import DataError, UsageError
from dataio.manifest import read_manifest
from dataio.reader import open_dataset
from dataio.writer import Keep, Remove, write_dataset

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


# ---- bad input -------------------------------------------------------------------------------


def _tar_members(path):
    with tarfile.open(path) as archive:
        return [(m.name, archive.extractfile(m).read()) for m in archive.getmembers() if m.isfile()]


def _write_tar(path, members):
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def damaged(make_synthetic, tmp_path):
    """A webdataset copy whose first shard has one sample broken in each way a download can break."""
    folder = tmp_path / "damaged"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    first = sorted(folder.glob("*.tar"))[0]
    members = _tar_members(first)
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
    _write_tar(first, rewritten)
    _write_tar(second, _tar_members(second) + duplicate)
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

"""The writer's range copy (a decision by key, webdataset, verify_images=False) against the sample reader.

The range copy must write what the block-by-block path writes: the same shards byte for byte, the same
metadata tables and manifest, the same unreadable samples with the same reasons. Where its index cannot
vouch for a shard (long names, renaming pax records, a cut archive, header-like image bytes), it must
hand the shard to the block-by-block path rather than guess.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tarfile

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dataio import formats
from dataio.errors import DataError
from dataio.reader import open_dataset
from dataio.tar_index import BLOCK, NotIndexable, _octal, indexed_samples
from dataio.writer import ByKey, Keep, Remove, write_dataset
from tar_files import tar_members, write_tar


def drop_some(key: str):
    return Remove("test") if hashlib.sha1(key.encode()).digest()[0] < 40 else Keep()


def write_both(folder, tmp_path, on_key=drop_some):
    """(range copy result, block-by-block result) of the same key decision."""
    ranges = write_dataset(open_dataset(folder), tmp_path / "ranges", ByKey(on_key), progress=False,
                           verify_images=False)
    blocks = write_dataset(open_dataset(folder), tmp_path / "blocks", lambda sample: on_key(sample.key),
                           progress=False, verify_images=False)
    return ranges, blocks


def assert_same_output(ranges, blocks):
    names = sorted(p.name for p in ranges.path.iterdir())
    assert names == sorted(p.name for p in blocks.path.iterdir())
    for name in names:
        mine, theirs = ranges.path / name, blocks.path / name
        if name.endswith("_stats.json"):
            drop_times = lambda s: {k: v for k, v in json.loads(s).items() if k not in ("duration", "start_time", "end_time")}
            assert drop_times(mine.read_text()) == drop_times(theirs.read_text()), name
        elif name.endswith(".parquet"):
            assert pq.read_table(mine).equals(pq.read_table(theirs)), name
        else:
            assert mine.read_bytes() == theirs.read_bytes(), name
    assert ranges.counts == blocks.counts


def sample_reader_fails(*args, **kwargs):
    raise AssertionError("the range copy fell back to the block-by-block reader")


def test_range_copy_writes_what_the_sample_reader_writes(make_synthetic, tmp_path, monkeypatch):
    data = make_synthetic(n=300, fmt="webdataset", inject=0.05, seed=0)
    blocks = write_dataset(open_dataset(data), tmp_path / "blocks", lambda s: drop_some(s.key), progress=False,
                           verify_images=False)
    monkeypatch.setattr(formats, "read_tar_shard", sample_reader_fails)  # the range path must not need it
    ranges = write_dataset(open_dataset(data), tmp_path / "ranges", ByKey(drop_some), progress=False,
                           verify_images=False)
    assert 0 < ranges.counts["removed"] < ranges.counts["kept"]
    assert_same_output(ranges, blocks)


def test_index_agrees_with_the_block_parser_for_every_window_size(make_synthetic):
    shard = sorted(make_synthetic(n=300, fmt="webdataset", inject=0.05, seed=0).glob("*.tar"))[0]
    with open(shard, "rb") as stream:
        stored = {}
        for name, _, member in formats.tar_members(stream):
            stored.setdefault(formats.split_name(name)[0], []).append(member)
    expected = {key: b"".join(members) for key, members in stored.items()}
    parsed = {s.key: s for s in formats.read_tar_shard(shard.parent, shard.stem)}
    # 2 blocks: smaller than any sample, so the index must widen its window to take one whole
    for window in (2 * BLOCK, 7 * BLOCK, 64 * BLOCK, 1 << 20):
        seen = []
        for part in indexed_samples(shard, window=window):
            for index, key in enumerate(part.keys):
                seen.append(key)
                start, end = int(part.starts[index]), int(part.ends[index])
                assert part.data[start:end] == expected[key]
                assert part.image_size[index] == len(parsed[key].image)
                caption_start, caption_end = part.caption[index]
                assert part.data[caption_start:caption_end] == parsed[key].caption
                meta_start, meta_end = part.meta[index]
                assert part.data[meta_start:meta_end] == parsed[key].meta
        assert seen == list(expected), window


@pytest.fixture
def broken_shard(make_synthetic, tmp_path):
    """A webdataset whose first shard holds each break the range copy must report as the reader does."""
    folder = tmp_path / "broken"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    shards = sorted(folder.glob("*.tar"))
    members = tar_members(shards[0])
    keys = list(dict.fromkeys(name.split(".")[0] for name, _ in members))
    changed = []
    for name, data in members:
        key, ext = name.split(".", 1)
        if key == keys[0] and ext == "jpg":
            data = b""  # zero-byte image
        elif key == keys[1] and ext == "txt":
            continue  # missing caption
        elif key == keys[2] and ext == "txt":
            data = b"caf\xe9 \xff"  # not UTF-8
        elif key == keys[3] and ext == "jpg":
            continue  # no image
        elif key == keys[4]:
            continue  # listed as downloaded, missing from the shard
        changed.append((name, data))
    write_tar(shards[0], changed, tarfile.GNU_FORMAT)
    # the first shard's sixth sample again in the second shard: a duplicate key
    write_tar(shards[1], tar_members(shards[1]) + [(n, d) for n, d in members if n.split(".")[0] == keys[5]])
    return folder, keys


def test_broken_samples_get_the_readers_reasons(broken_shard, tmp_path):
    folder, keys = broken_shard
    ranges, blocks = write_both(folder, tmp_path)
    assert_same_output(ranges, blocks)
    manifest = pd.read_parquet(ranges.manifest_path).set_index("key")
    reasons = manifest.loc[manifest.action == "unreadable", "reason"]
    assert reasons[keys[0]] == "zero-byte image"
    assert reasons[keys[1]] == "missing caption (.txt)"
    assert reasons[keys[2]] == "caption is not valid UTF-8"
    assert reasons[keys[3]] == "no image file"
    assert reasons[keys[4]].startswith("listed as downloaded")
    assert reasons.str.startswith("duplicate key").sum() == 1


def test_a_key_twice_in_one_shard_is_a_duplicate_there_too(make_synthetic, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    shard = sorted(folder.glob("*.tar"))[0]
    members = tar_members(shard)
    first_key = members[0][0].split(".")[0]
    write_tar(shard, members + [(n, d) for n, d in members if n.split(".")[0] == first_key])
    ranges, blocks = write_both(folder, tmp_path, on_key=lambda key: Keep())
    assert_same_output(ranges, blocks)
    manifest = pd.read_parquet(ranges.manifest_path)
    duplicate = manifest[manifest.reason.str.startswith("duplicate key")]
    assert duplicate.key.tolist() == [first_key]
    assert duplicate.reason.tolist() == [f"duplicate key (first seen in shard {shard.stem})"]


@pytest.mark.parametrize("threads", [1, 3])
def test_any_number_of_threads_writes_what_one_process_reading_samples_writes(broken_shard, tmp_path, threads):
    """Shards are indexed and copied on threads, but decisions and duplicates are settled in shard order: the
    duplicate in the second shard is still the one called unreadable, and the output is the same."""
    folder, keys = broken_shard
    ranges = write_dataset(open_dataset(folder), tmp_path / "ranges", ByKey(drop_some), progress=False,
                           verify_images=False, threads=threads)
    blocks = write_dataset(open_dataset(folder), tmp_path / "blocks", lambda sample: drop_some(sample.key),
                           progress=False, verify_images=False)
    assert_same_output(ranges, blocks)
    manifest = pd.read_parquet(ranges.manifest_path)
    duplicate = manifest[manifest.reason.str.startswith("duplicate key")]
    assert duplicate.key.tolist() == [keys[5]] and duplicate.shard.tolist() == [sorted(p.stem for p in folder.glob("*.tar"))[1]]


def test_an_error_on_a_copying_thread_stops_the_rewrite_and_leaves_nothing(make_synthetic, tmp_path, monkeypatch):
    data = make_synthetic(n=300, fmt="webdataset", inject=0.05, seed=0)
    copy_range = formats.TarShardWriter.copy_range

    def fail_in_the_second_shard(writer, source, offset, length):
        if writer.final.stem == sorted(p.stem for p in data.glob("*.tar"))[1]:
            raise OSError(errno.ENOSPC, "No space left on device")
        copy_range(writer, source, offset, length)

    monkeypatch.setattr(formats.TarShardWriter, "copy_range", fail_in_the_second_shard)
    with pytest.raises(OSError, match="No space left"):
        write_dataset(open_dataset(data), tmp_path / "out", ByKey(drop_some), progress=False, verify_images=False,
                      threads=3)
    assert list(tmp_path.iterdir()) == []  # neither the output nor its staging folder


def test_a_broken_metadata_table_read_on_a_thread_is_reported_by_name(make_synthetic, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(make_synthetic(n=300, fmt="webdataset", inject=0.05, seed=0), folder)
    table = sorted(folder.glob("*.parquet"))[1]
    table.write_bytes(b"PAR1 not a parquet file")
    with pytest.raises(DataError, match=f"{table}: cannot read the metadata parquet"):
        write_dataset(open_dataset(folder), tmp_path / "out", ByKey(drop_some), progress=False, verify_images=False,
                      threads=3)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_a_range_past_the_end_of_the_shard_is_an_error_naming_it(tmp_path, kernel_copy):
    """The index saw the bytes; if the file is shorter when they are copied, it changed under the rewrite."""
    source = tmp_path / "00000.tar"
    source.write_bytes(bytes(4 * BLOCK))
    writer = formats.TarShardWriter(tmp_path, "copy")
    writer.kernel_copy = kernel_copy
    with open(source, "rb") as stream, pytest.raises(DataError, match=f"{source}: ended at byte {4 * BLOCK}"):
        writer.copy_range(stream, 2 * BLOCK, 4 * BLOCK)
    writer.abort()


@pytest.mark.parametrize("case", ["long name", "renaming pax record", "folder in name", "header-like image bytes"])
def test_what_the_index_cannot_vouch_for_goes_to_the_reader(case, make_synthetic, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)

    def change(members):
        name, data = members[0]
        if case == "long name":  # GNU long-name entry
            return [(name.replace(".", "x" * 110 + ".", 1), data)] + members[1:]
        if case == "renaming pax record":  # written as PAX below: a non-ASCII name needs a path record
            return [("é" + name, data)] + members[1:]
        if case == "folder in name":
            return [(f"part/{n}", d) for n, d in members]
        image = next(i for i, (n, _) in enumerate(members) if n.endswith(".jpg"))
        fake = bytearray(members[image][1] + bytes(600))
        fake[257:262] = b"ustar"  # the first data block looks like a header
        return members[:image] + [(members[image][0], bytes(fake))] + members[image + 1:]

    shard = sorted(folder.glob("*.tar"))[0]
    write_tar(shard, change(tar_members(shard)), tarfile.PAX_FORMAT if case == "renaming pax record" else tarfile.GNU_FORMAT)
    with pytest.raises(NotIndexable):
        list(indexed_samples(shard))
    ranges, blocks = write_both(folder, tmp_path)
    assert_same_output(ranges, blocks)


def test_a_cut_shard_is_reported_as_the_reader_reports_it(make_synthetic, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    shard = sorted(folder.glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2 // BLOCK * BLOCK])
    ranges, blocks = write_both(folder, tmp_path)
    assert_same_output(ranges, blocks)
    manifest = pd.read_parquet(ranges.manifest_path)
    assert manifest.reason.str.contains("truncated").any()


def test_json_is_parsed_only_where_the_metadata_table_lacks_the_key(make_synthetic, tmp_path):
    """The documented difference: a listed sample's broken json is copied unread; an unlisted sample's
    row must come from its json, so a broken one is unreadable, as the reader says."""
    folder = tmp_path / "data"
    shutil.copytree(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), folder)
    shard = sorted(folder.glob("*.tar"))[0]
    members = tar_members(shard)
    keys = list(dict.fromkeys(name.split(".")[0] for name, _ in members))
    broken = [(n, b"{not json" if n == f"{keys[0]}.json" or n == f"{keys[1]}.json" else d) for n, d in members]
    write_tar(shard, broken, tarfile.GNU_FORMAT)
    table = pq.read_table(shard.with_suffix(".parquet"))
    pq.write_table(table.filter(pd.Series(table.column("key").to_pylist()).ne(keys[1]).to_numpy()),
                   shard.with_suffix(".parquet"))
    ranges = write_dataset(open_dataset(folder), tmp_path / "ranges", ByKey(lambda key: Keep()), progress=False,
                           verify_images=False)
    manifest = pd.read_parquet(ranges.manifest_path).set_index("key")
    assert manifest.action[keys[0]] == "kept"
    assert manifest.action[keys[1]] == "unreadable" and manifest.reason[keys[1]].startswith("unreadable json")


def test_a_key_decision_may_not_change_a_sample(make_synthetic, tmp_path):
    data = make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1)
    with pytest.raises(ValueError, match="may only keep or remove"):
        write_dataset(open_dataset(data), tmp_path / "out", ByKey(lambda key: Keep(caption="new")),
                      progress=False, verify_images=False)


def test_without_a_kernel_copy_the_ranges_are_read_and_written(make_synthetic, tmp_path, monkeypatch):
    """Where os.copy_file_range fails (another filesystem, an old kernel), the same bytes are written."""
    calls = []

    def no_kernel_copy(*args):
        calls.append(args)
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", no_kernel_copy)
    data = make_synthetic(n=300, fmt="webdataset", inject=0.05, seed=0)
    ranges, blocks = write_both(data, tmp_path)
    assert calls, "the range copy did not try the kernel copy"
    assert_same_output(ranges, blocks)


@pytest.mark.parametrize("rows", [
    [b"00000001750\0", b"00000000017\0"],  # fixed width, as tarfile writes sizes
    [b"1750\0       ", b"17 \0\0\0\0\0\0\0\0\0"],  # widths that differ row to row
    [b"00000001750\0", b"  1750\0\0\0\0\0\0", b"\x80\0\0\0\0\0\0\0\0\0\x07\xd0", b"\0" * 12],  # not plain
])
def test_octal_fields_are_read_as_tarfile_reads_plain_ones(rows):
    values, plain = _octal(np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), 12))
    for row, value, is_plain in zip(rows, values.tolist(), plain.tolist()):
        # plain: octal digits from the first byte, then only NULs or spaces (a leading space is not)
        digits = row.split(b"\0", 1)[0].rstrip(b" ")
        expected_plain = bool(digits) and all(ord("0") <= c <= ord("7") for c in digits)
        assert is_plain == expected_plain, row
        assert value == (tarfile.nti(row) if expected_plain else -1), row

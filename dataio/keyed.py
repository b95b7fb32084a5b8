"""Files keyed by `key` checked against the data they are applied to.

img2dataset's key is a position (shard number and row), not an identity: every download numbers its
samples the same way, so two datasets share most keys, and a folder rewritten since a file was made
keeps its keys. A command that takes such a file (flag's scores, a reviewer's decisions) compares the
caption the file recorded for each key with the data's caption before it writes anything.

Example:
    >>> check_captions("scores.parquet", {"1": "a dog", "2": "a cat"}, {"1": "a dog", "2": "a cat"}, "data", "rerun flag")
    >>> check_captions("scores.parquet", {"1": "a dog", "2": "a cat"}, {"1": "a dog", "2": "a car"}, "data", "rerun flag")
    Traceback (most recent call last):
    ...
    dataio.errors.DataError: scores.parquet: 1 of 2 keys have another caption in data than in this file (e.g. key 2: 'a car' in the data, 'a cat' in the file); a key is a position, not an identity: rerun flag
"""

from __future__ import annotations

from typing import Mapping

from dataio.errors import DataError
from dataio.reader import Dataset, Sample

SHOWN_CHARS = 40


def data_captions(dataset: Dataset) -> dict:
    """key -> primary caption of every readable sample, read without decoding an image."""
    return {record.key: record.caption for record in dataset.records(verify_images=False) if isinstance(record, Sample)}


def check_captions(source, recorded: Mapping, captions: Mapping, data, what_to_do: str) -> None:
    """DataError unless every key of `recorded` that the data has carries the same caption in both.

    The message counts the keys that disagree and shows one, so a wrong file is told from a few edits.
    """
    compared = [key for key in recorded if key in captions]
    differ = [key for key in compared if recorded[key] != captions[key]]
    if differ:
        key = min(differ)
        raise DataError(f"{source}: {len(differ)} of {len(compared)} keys have another caption in {data} than in "
                        f"this file (e.g. key {key}: {_shown(captions[key])} in the data, {_shown(recorded[key])} in "
                        f"the file); a key is a position, not an identity: {what_to_do}")


def _shown(caption) -> str:
    """A caption on one line and short: repr escapes line breaks, long ones are cut."""
    text = str(caption)
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")

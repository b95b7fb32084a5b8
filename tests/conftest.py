"""Shared fixtures: small synthetic datasets built through the real demo-data path.

Each dataset is made the way `python cli.py demo-data --source synthetic` makes it (staging folder,
url parquet, local HTTP server, img2dataset), once per test session and set of arguments. Treat the
folders as read-only: other tests share them; write outputs to your own tmp_path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import dataio  # noqa: F401  (first: it sets the OpenMP policy before any test module loads torch)
from demo.build import build_demo

ATTACK_CAPTION = "<script>alert(1)</script>"
# Settings of the shared flag run: 12 epochs is what the detection margins of test_flag were measured at.
SHAPES_RUN = {"folds": 3, "epochs": 12, "batch_size": 64, "lr": 1e-3, "progress": False}


@pytest.fixture(scope="session")
def make_synthetic(tmp_path_factory):
    """Factory: make_synthetic(n=300, fmt="webdataset", inject=0.05, seed=0, image_size=64) -> Path.

    Builds are cached per session by their arguments, so asking twice costs nothing.
    """
    built: dict = {}

    def make(n: int = 300, fmt: str = "webdataset", inject: float = 0.05, seed: int = 0,
             image_size: int = 64) -> Path:
        arguments = (n, fmt, inject, seed, image_size)
        if arguments not in built:
            out = tmp_path_factory.mktemp("synthetic") / f"{fmt}_n{n}_seed{seed}"
            built[arguments] = build_demo(
                out, n=n, image_size=image_size, seed=seed, inject_swaps=inject, source="synthetic",
                output_format=fmt, processes=1, progress=False,
            )
        return built[arguments]

    return make


@pytest.fixture(scope="session")
def synthetic_dataset(make_synthetic) -> Path:
    """300 synthetic shapes, 64 px, 5% of captions swapped across categories, webdataset format."""
    return make_synthetic(300, "webdataset", 0.05, 0)


@pytest.fixture(scope="session")
def shapes_run(make_synthetic, tmp_path_factory):
    """One kfold `flag` run, shared by test_flag and test_canaries because training it is the suite's largest
    single cost: 480 synthetic shapes, 10 % swapped captions, one caption an HTML attack, 10 % canaries, method
    auto, into the default output folder. -> (data, out, attacked key, FlagResult, pristine copy of out).

    test_flag re-scores into `out`; a test that needs the run as trained copies `pristine` first."""
    import curate
    from dataio.reader import open_dataset
    from dataio.writer import Keep, write_dataset

    source = open_dataset(make_synthetic(n=480, fmt="webdataset", inject=0.1, seed=11))
    victim = next(iter(source.samples())).key
    data = tmp_path_factory.mktemp("flag") / "shapes"
    write_dataset(source, data, lambda s: Keep(caption=ATTACK_CAPTION) if s.key == victim else Keep(),
                  progress=False)
    result = curate.flag(data, canaries=0.1, method="auto", **SHAPES_RUN)
    pristine = tmp_path_factory.mktemp("flag-pristine") / "shapes.clipmem"
    shutil.copytree(result.out, pristine)
    return data, result.out, victim, result, pristine

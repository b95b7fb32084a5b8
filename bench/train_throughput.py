"""Training throughput: our loop against open_clip's own trainer and against pure compute.

Same model (clipmem-tiny by default), same webdataset shards, same batch size, CPU, fp32:
- pure compute: forward + loss + backward + AdamW step on the same batches, prepared beforehand as
  normalized float tensors (no indexing, conversion, caption choice, loss records or progress bar);
- ours: train.loop.train_clip on the dataset's table (images decoded once beforehand), with and without
  image augmentation;
- open_clip_train: `python -m open_clip_train.main --dataset-type webdataset ...`, run through a two-line
  wrapper that imports train.models first so that the clipmem presets are registered.
Steady-state samples/s leave out the first steps (start-up, allocator warm-up); end-to-end adds start-up and
decoding. Targets: ours / open_clip >= 1.0, ours / pure compute >= 0.85.

    python bench/train_throughput.py                     # builds a synthetic dataset once, in /tmp
    python bench/train_throughput.py --data laion_subset --samples 2560 --repeats 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dataio  # noqa: E402,F401,I001  (before torch: it sets the OpenMP policy)
import torch  # noqa: E402
from train.augment import to_model_input  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.data import load_table  # noqa: E402
from train.loop import train_clip  # noqa: E402
from train.losses import per_sample_losses  # noqa: E402
from train.models import create_model, image_mean_std  # noqa: E402

DEFAULT_DATA = Path(tempfile.gettempdir()) / "clipmem_bench" / "shapes_n2560"
OPEN_CLIP_RATE = re.compile(r"Batch \(t\): ([0-9.]+),")
WRAPPER = "import sys, train.models\nfrom open_clip_train.main import main\nmain(sys.argv[1:])"


def steady_rate(step_seconds: list, batch_size: int, skip: int) -> float:
    kept = step_seconds[skip:] or step_seconds
    return batch_size * len(kept) / sum(kept)


def pure_compute(table, keys: list, model_name: str, batch_size: int) -> list:
    """Forward + loss + backward + step on the same batches as ours, prepared as float tensors beforehand."""
    model, tokenizer, size = create_model(model_name, seed=0)
    model.train()
    mean, std = image_mean_std(model)
    tokens, first = table.tokens(tokenizer)
    batches = []
    for start in range(0, len(keys) - batch_size + 1, batch_size):
        rows = table.rows(keys[start:start + batch_size])
        batches.append((to_model_input(table.images[rows], mean, std, size), tokens[first[rows]]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    seconds = []
    for images, texts in batches:
        started = time.perf_counter()
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(texts, normalize=True)
        loss = per_sample_losses(image_features, text_features, model.logit_scale.exp()).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds


def ours(table, keys: list, model_name: str, batch_size: int, image_aug: bool):
    config = TrainConfig(model=model_name, epochs=1, batch_size=batch_size, lr=5e-4, warmup=2, image_aug=image_aug)
    result = train_clip(table, keys, config, progress=False)
    return result.step_seconds, result.seconds


def open_clip_trainer(data: Path, model_name: str, batch_size: int, samples: int, logs: Path):
    shards = sorted(p.stem for p in data.glob("*.tar"))
    train_data = f"{data}/{{{shards[0]}..{shards[-1]}}}.tar" if len(shards) > 1 else str(data / f"{shards[0]}.tar")
    command = [sys.executable, "-c", WRAPPER, "--train-data", train_data, "--dataset-type", "webdataset",
               "--train-num-samples", str(samples), "--batch-size", str(batch_size), "--epochs", "1",
               "--workers", "1", "--device", "cpu", "--precision", "fp32", "--model", model_name, "--lr", "5e-4",
               "--warmup", "2", "--wd", "0.1", "--log-every-n-steps", "1", "--logs", str(logs),
               "--save-frequency", "0", "--report-to", "", "--seed", "0", "--name", f"bench{time.time_ns()}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"open_clip_train failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    seconds = [float(m) for m in OPEN_CLIP_RATE.findall(done.stdout + done.stderr)]
    if not seconds:
        raise SystemExit("open_clip_train printed no 'Batch (t)' lines; cannot measure it")
    return seconds, wall


def ensure_data(path: Path, samples: int) -> Path:
    if path.exists():
        return path
    from demo.build import build_demo

    print(f"building a synthetic dataset of {samples} samples in {path} (once)", file=sys.stderr)
    return build_demo(path, n=samples, source="synthetic", image_size=64, processes=2, progress=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="webdataset folder (default: a synthetic one in /tmp)")
    parser.add_argument("--model", default="clipmem-tiny")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=1280, help="samples per measured run")
    parser.add_argument("--skip", type=int, default=2, help="first steps left out of steady-state rates")
    parser.add_argument("--repeats", type=int, default=1, help="repeat each measurement; medians are reported")
    args = parser.parse_args(argv)

    data = ensure_data(args.data or DEFAULT_DATA, max(args.samples, 2560))
    decode_started = time.perf_counter()
    table = load_table(data, image_size=64, progress=False)
    decode_seconds = time.perf_counter() - decode_started
    keys = table.keys[: args.samples]
    steps = len(keys) // args.batch_size
    rates = {name: [] for name in ("pure compute", "ours", "ours + image aug", "open_clip_train")}
    walls = {name: [] for name in rates}
    with tempfile.TemporaryDirectory() as logs:
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits all alike
            seconds = pure_compute(table, keys, args.model, args.batch_size)
            rates["pure compute"].append(steady_rate(seconds, args.batch_size, args.skip))
            walls["pure compute"].append(sum(seconds))
            for name, aug in (("ours", False), ("ours + image aug", True)):
                seconds, wall = ours(table, keys, args.model, args.batch_size, aug)
                rates[name].append(steady_rate(seconds, args.batch_size, args.skip))
                walls[name].append(wall + decode_seconds * len(keys) / len(table))
            seconds, wall = open_clip_trainer(data, args.model, args.batch_size, len(keys), Path(logs))
            rates["open_clip_train"].append(steady_rate(seconds, args.batch_size, args.skip))
            walls["open_clip_train"].append(wall)

    rate = {name: statistics.median(values) for name, values in rates.items()}
    wall = {name: statistics.median(values) for name, values in walls.items()}
    print(f"{args.model}, batch {args.batch_size}, {len(keys)} samples ({steps} steps), {torch.get_num_threads()} "
          f"threads, data {data}; decode once: {decode_seconds:.1f} s for {len(table)} images")
    print(f"{'':<18}{'samples/s':>10}{'s/batch':>9}{'end-to-end s':>14}{'vs open_clip':>14}{'vs compute':>12}")
    for name in rates:
        print(f"{name:<18}{rate[name]:>10.1f}{args.batch_size / rate[name]:>9.3f}{wall[name]:>14.1f}"
              f"{rate[name] / rate['open_clip_train']:>13.2f}x{rate[name] / rate['pure compute']:>11.2f}x")
    print("targets: ours / open_clip_train >= 1.00x, ours / pure compute >= 0.85x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

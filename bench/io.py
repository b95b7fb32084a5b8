"""Benchmark (not a test): rewrite a 20,000-sample webdataset keeping 95 % of keys.

Prints our seconds beside a plain copy of the same shard files, as a ratio (target: at most 2x), for a
decision by key (`writer.ByKey`: kept samples copied as byte ranges, shards indexed and copied on the
writer's default number of threads, and on one), and for a per-sample decision with
and without decoding every image (`verify_images`); and the peak memory of the rewrite at 5,000 and at
20,000 samples (target: flat, ratio at most 1.3). Each measurement runs in a fresh process so peak
memory is that run's own; each is the best of --repeat runs, since other processes on a shared machine
slow some runs down. CPU seconds (user + system, this process) are printed too: on a busy machine they
show the work done where wall-clock seconds also count the wait for a core.

    python bench/io.py [--work /tmp/clipmem-bench-io] [--n 20000] [--small 5000] [--repeat 3] [--image-size 64] [--shard-size N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REWRITE = """
import hashlib, json, shutil, sys, time
from dataio.reader import open_dataset
from dataio.writer import ByKey, Keep, Remove, write_dataset
src, out, verify, by_key = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
threads = int(sys.argv[5]) if len(sys.argv) > 5 else None  # None: the writer's default
shutil.rmtree(out, ignore_errors=True)
def decide_key(key):
    # a stable 5 % of keys, the same in every run
    return Remove("bench") if hashlib.sha1(key.encode()).digest()[0] < 13 else Keep()
# ByKey: the writer may copy kept samples as byte ranges; a plain function makes it read every sample
decide = ByKey(decide_key) if by_key else (lambda sample: decide_key(sample.key))
start, cpu_start = time.perf_counter(), time.process_time()
result = write_dataset(open_dataset(src), out, decide, progress=False, verify_images=verify, threads=threads)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": int(peak) / 1024, "counts": result.counts}))
"""

COPY = """
import json, shutil, sys, time
src, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
start, cpu_start = time.perf_counter(), time.process_time()
shutil.copytree(src, out)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": int(peak) / 1024}))
"""


def measure(script: str, *args: str) -> dict:
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def best_of(repeat: int, script: str, *args: str) -> dict:
    """The least wall-clock and CPU seconds of `repeat` fresh-process runs, and the highest peak memory."""
    runs = [measure(script, *args) for _ in range(repeat)]
    return {**runs[0], **{name: min(r[name] for r in runs) for name in ("seconds", "cpu")},
            "peak_mib": max(r["peak_mib"] for r in runs)}


def ensure_dataset(path: Path, n: int, image_size: int, shard_size: Optional[int]) -> Path:
    if not path.exists():
        from demo.build import build_demo

        print(f"building a {n}-sample synthetic webdataset in {path} (once) ...", flush=True)
        build_demo(path, n=n, image_size=image_size, seed=0, source="synthetic", output_format="webdataset",
                   samples_per_shard=shard_size)
    return path


def main() -> None:
    from dataio.writer import default_threads

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/clipmem-bench-io")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64,
                        help="side of the synthetic images in pixels (64: about 8 kB of tar per sample; "
                             "256: about 12 kB)")
    parser.add_argument("--shard-size", type=int, default=None,
                        help="samples per shard (default: the demo builder's, 1,000 for 20,000 samples; "
                             "img2dataset's default is 10,000)")
    args = parser.parse_args()
    work = Path(args.work)
    name = "synthetic" if args.image_size == 64 else f"synthetic{args.image_size}"
    name += f"-shards{args.shard_size}" if args.shard_size else ""
    large = ensure_dataset(work / f"{name}-{args.n}", args.n, args.image_size, args.shard_size)
    small = ensure_dataset(work / f"{name}-{args.small}", args.small, args.image_size, args.shard_size)

    copy = best_of(args.repeat, COPY, str(large), str(work / "copy"))
    ranges = best_of(args.repeat, REWRITE, str(large), str(work / "rewrite"), "0", "1")
    ranges_one_thread = best_of(args.repeat, REWRITE, str(large), str(work / "rewrite"), "0", "1", "1")
    fast = best_of(args.repeat, REWRITE, str(large), str(work / "rewrite"), "0", "0")
    verified = best_of(args.repeat, REWRITE, str(large), str(work / "rewrite"), "1", "0")
    ranges_small = best_of(args.repeat, REWRITE, str(small), str(work / "rewrite-small"), "0", "1")
    fast_small = best_of(args.repeat, REWRITE, str(small), str(work / "rewrite-small"), "0", "0")
    verified_small = best_of(args.repeat, REWRITE, str(small), str(work / "rewrite-small"), "1", "0")

    size = sum(p.stat().st_size for p in large.glob("*.tar")) / args.n
    shards = len(list(large.glob("*.tar")))
    print(f"\nrewrite of {args.n} samples in {shards} shards ({size / 1000:.1f} kB of tar each) keeping 95 % "
          f"({fast['counts']}), "
          f"best of {args.repeat} runs")
    print(f"{'':52}{'seconds':>9}{'x copy':>9}{'CPU s':>9}{'x copy':>9}{'peak MiB':>10}")
    rows = (("plain copy of the shard files", copy),
            (f"ours, key-only decision (byte ranges), {default_threads()} threads", ranges),
            ("ours, key-only decision (byte ranges), 1 thread", ranges_one_thread),
            ("ours, per-sample decision, no verify", fast),
            ("ours, per-sample decision, verify (decodes all)", verified))
    for label, result in rows:
        print(f"{label:52}{result['seconds']:9.2f}{result['seconds'] / copy['seconds']:9.2f}"
              f"{result['cpu']:9.2f}{result['cpu'] / copy['cpu']:9.2f}{result['peak_mib']:10.0f}")
    for label, at_small, at_large in (("key-only", ranges_small, ranges), ("per-sample, no verify", fast_small, fast),
                                      ("per-sample, verify", verified_small, verified)):
        print(f"peak memory of the rewrite, {label}: {at_small['peak_mib']:.0f} MiB at {args.small} samples, "
              f"{at_large['peak_mib']:.0f} MiB at {args.n}: ratio {at_large['peak_mib'] / at_small['peak_mib']:.2f} "
              "(target <= 1.3)")


if __name__ == "__main__":
    main()

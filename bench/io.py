"""Benchmark (not a test): rewrite a 20,000-sample webdataset keeping 95 % of keys.

Prints our seconds beside a plain copy of the same shard files (target: at most 2x), and the peak
memory of the rewrite at 5,000 and at 20,000 samples (target: flat, ratio at most 1.3). Each
measurement runs in a fresh process so peak memory is that run's own.

    python bench/io.py [--work /tmp/clipmem-bench-io] [--n 20000] [--small 5000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REWRITE = """
import hashlib, json, shutil, sys, time
from dataio.reader import open_dataset
from dataio.writer import Keep, Remove, write_dataset
src, out, verify = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
shutil.rmtree(out, ignore_errors=True)
def decide(sample):
    # a stable 5 % of keys, the same in every run
    return Remove("bench") if hashlib.sha1(sample.key.encode()).digest()[0] < 13 else Keep()
start = time.perf_counter()
result = write_dataset(open_dataset(src), out, decide, progress=False, verify_images=verify)
seconds = time.perf_counter() - start
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": seconds, "peak_mib": int(peak) / 1024, "counts": result.counts}))
"""

COPY = """
import json, shutil, sys, time
src, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
start = time.perf_counter()
shutil.copytree(src, out)
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": int(peak) / 1024}))
"""


def measure(script: str, *args: str) -> dict:
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def ensure_dataset(path: Path, n: int) -> Path:
    if not path.exists():
        from demo.build import build_demo

        print(f"building a {n}-sample synthetic webdataset in {path} (once) ...", flush=True)
        build_demo(path, n=n, image_size=64, seed=0, source="synthetic", output_format="webdataset")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/clipmem-bench-io")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--small", type=int, default=5000)
    args = parser.parse_args()
    work = Path(args.work)
    large = ensure_dataset(work / f"synthetic-{args.n}", args.n)
    small = ensure_dataset(work / f"synthetic-{args.small}", args.small)

    copy = measure(COPY, str(large), str(work / "copy"))
    ours = measure(REWRITE, str(large), str(work / "rewrite"), "1")
    ours_fast = measure(REWRITE, str(large), str(work / "rewrite"), "0")
    ours_small = measure(REWRITE, str(small), str(work / "rewrite-small"), "1")

    print(f"\nrewrite of {args.n} samples keeping 95 % ({ours['counts']})")
    print(f"{'':34}{'seconds':>9}{'x copy':>9}{'peak MiB':>10}")
    print(f"{'plain copy of the shard files':34}{copy['seconds']:9.2f}{1.0:9.2f}{copy['peak_mib']:10.0f}")
    print(f"{'ours, every image decoded':34}{ours['seconds']:9.2f}{ours['seconds'] / copy['seconds']:9.2f}{ours['peak_mib']:10.0f}")
    print(f"{'ours, --no-verify':34}{ours_fast['seconds']:9.2f}{ours_fast['seconds'] / copy['seconds']:9.2f}{ours_fast['peak_mib']:10.0f}")
    print(f"\npeak memory of the rewrite: {ours_small['peak_mib']:.0f} MiB at {args.small} samples, "
          f"{ours['peak_mib']:.0f} MiB at {args.n}: ratio {ours['peak_mib'] / ours_small['peak_mib']:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()

"""A real client of our output: open_clip's own trainer reads a webdataset copy written by dataio.writer."""

import json
import subprocess
import sys

from dataio.reader import open_dataset
from dataio.writer import Keep, Remove, write_dataset

# Small enough to train a few steps on a CPU in seconds; same config format open_clip ships.
TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}
WRAPPER = (
    "import sys, open_clip; open_clip.add_model_config(sys.argv.pop(1)); "
    "from open_clip_train.main import main; main(sys.argv[1:])"
)


def train_with_open_clip(webdataset_dir, num_samples: int, work, batch_size: int = 8) -> str:
    """Run open_clip's own trainer for one epoch on every shard of a webdataset folder; returns its log."""
    config = work / "tinytest.json"
    config.write_text(json.dumps(TINY_CONFIG))
    shards = sorted(p.stem for p in webdataset_dir.glob("*.tar"))
    train_data = str(webdataset_dir / f"{{{shards[0]}..{shards[-1]}}}.tar")
    run = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(config),
         "--dataset-type", "webdataset", "--train-data", train_data, "--train-num-samples", str(num_samples),
         "--batch-size", str(batch_size), "--epochs", "1", "--device", "cpu", "--precision", "fp32",
         "--workers", "1", "--model", "tinytest", "--logs", str(work / "logs"), "--name", "run", "--lr", "1e-4",
         "--warmup", "1", "--report-to", ""],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "logs" / "run" / "checkpoints" / "epoch_1.pt").exists()
    return (work / "logs" / "run" / "out.log").read_text()


def test_open_clip_trainer_reads_our_webdataset_copy(make_synthetic, tmp_path):
    dataset = open_dataset(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1))
    result = write_dataset(dataset, tmp_path / "copy",
                           lambda s: Remove("test") if s.key.endswith("0") else Keep(), progress=False)
    log = train_with_open_clip(tmp_path / "copy", result.counts["kept"], tmp_path)
    assert "Contrastive_loss" in log

"""The README's "Use from Python" example runs as printed and writes what it says."""

import re
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Use from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    exec(compile(readme_python_example(), str(README), "exec"), namespace)

    scores = pd.read_parquet(tmp_path / "shapes.clipmem" / "scores.parquet")
    assert len(scores) == 300 and scores["key"].is_unique
    assert namespace["flagged"].flagged_keys[0] == scores.sort_values("score").iloc[-1]["key"]
    manifest = pd.read_parquet(tmp_path / "shapes.remove" / "manifest.parquet")
    assert (manifest["action"] == "removed").sum() == 30
    # the removed pairs are the 30 the flag run ranked most suspect by the same (combined) ranking
    top = scores.sort_values(["rank_combined", "key"], ascending=[False, True]).head(30)
    assert set(manifest.loc[manifest["action"] == "removed", "key"]) == set(top["key"])
    assert (tmp_path / "shapes.model" / "metrics.json").is_file()
    assert namespace["run"].metrics["n_samples"] == len(namespace["run"].heldout_keys) > 0
    tradeoff = pd.read_csv(tmp_path / "shapes.tradeoff" / "tradeoff.csv")
    assert list(tradeoff["strategy"]) == ["baseline", "text-noise:sigma=0.15"]
    printed = capsys.readouterr().out
    assert "report.html" in printed and "tradeoff.md" in printed

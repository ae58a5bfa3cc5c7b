"""benchmarks/bench_pairs.py: the full-size and the fine-tune's build of the same pairs."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import load_benchmark


def test_small_run_times_both_builds(shared_data: Path, tmp_path: Path) -> None:
    bench = load_benchmark("bench_pairs")
    out = tmp_path / "pairs.json"
    doc = bench.run(bench.parse_args(["--data", str(shared_data), "--mp", "1.5", "--pairs", "2", "--jobs", "1",
                                      "--out-json", str(out)]), log=lambda *_a: None)
    saved = json.loads(out.read_text())
    full, small = saved["builds"]["full size"], saved["builds"]["max_side 384 (finetune)"]
    assert full["items"] == small["items"] == 2 and full["errors"] == small["errors"] == 0
    assert small["mb_per_pair"] < full["mb_per_pair"] / 5            # 1500 px -> 384 px: about 15x fewer pixels
    assert full["gb_for_577"] == full["mb_per_pair"] * 577 / 1e3
    assert "| full size |" in doc["markdown"]

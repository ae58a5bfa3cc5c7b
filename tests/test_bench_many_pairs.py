"""benchmarks/bench_many_pairs.py: the crops of its many-pair studio, and a smoke run of both regimes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conftest import load_benchmark, synth_finals


def _photos() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(f"p{i}.jpg", rng.uniform(0.05, 0.95, (300 + 40 * i, 420, 3)).astype(np.float32)) for i in range(3)]


def test_crops_are_a_fixed_sequence_each_edited_by_the_look() -> None:
    bench = load_benchmark("bench_many_pairs")
    from flambient.looks import make_look

    photos = _photos()
    many, few = bench.crop_pairs(photos, 7, look_seed=1), bench.crop_pairs(photos, 4, look_seed=1)
    assert [p.name for p in many[:4]] == [p.name for p in few]          # a larger N holds every smaller one
    assert all(np.array_equal(a.src, b.src) for a, b in zip(many, few))
    assert [p.name.split("_c")[0] for p in many] == ["p0", "p1", "p2", "p0", "p1", "p2", "p0"]   # round-robin
    look = make_look(1)
    for p in many:
        assert p.src.shape == p.tgt.shape and max(p.src.shape[:2]) < bench.CROP_SIDE[1]
        np.testing.assert_allclose(p.tgt, look.apply(p.src))               # each crop edited on its own
    assert len({p.src.shape for p in many}) > 1                              # crops differ in size


def test_smoke_run_reports_both_regimes(shared_data: Path, tmp_path: Path) -> None:
    bench = load_benchmark("bench_many_pairs")
    photos = synth_finals(tmp_path)
    out = tmp_path / "many.json"
    common = ["--photos", str(photos), "--data", str(shared_data), "--max-side", "48", "--ft-steps", "2",
              "--no-flip", "--out-json", str(out)]
    doc = bench.run(bench.parse_args(["--ns", "3", *common]), log=lambda *_a: None)
    assert doc["n"]["3"]["finetune"]["regime"] == "few-shot"
    bench.run(bench.parse_args(["--ns", "9", "--few-pairs", "8", *common]), log=lambda *_a: None)
    saved = json.loads(out.read_text())
    r = saved["n"]["9"]
    assert r["finetune"]["regime"] == "many pairs" and r["finetune"]["steps"] == 2
    assert set(r["finetune"]["own_estimate"]) >= {"before", "after"}
    assert len(saved["test"]) >= 20 and saved["n_photos"] == 2
    for m in ("ten-line", "finetuned"):
        assert r[m]["delta_e2000"] > 0 and r[m]["worst_image_delta_e2000"] >= r[m]["delta_e2000"] - 1e-9
    assert saved["base"]["delta_e2000"] > 0 and "| 9 | many pairs |" in saved["markdown"]

"""benchmarks/bench_quality.py: the quality part and its ``--bracket-floor`` override."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def studio_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tiny synthetic ``studio`` pairs (their truth sits about a stop under the ambient frame)."""
    from flambient.synth.shoot import synth_pairs

    out = tmp_path_factory.mktemp("studio_val")
    synth_pairs(out, pairs=3, size=(96, 64), seed=2, style="studio", workers=1)
    return out


def test_bracket_floor_override_changes_only_the_model(studio_val: Path) -> None:
    bench = load_benchmark("bench_quality")
    shipped = bench.quality("default", studio_val)
    no_floor = bench.quality("default", studio_val, bracket_floor=-2.0)
    assert set(shipped) == set(no_floor) and "model" in shipped
    for name in shipped:
        if not name.startswith("model"):
            # the baselines never see the option (OpenCV's Mertens is not bit-reproducible)
            assert shipped[name] == pytest.approx(no_floor[name], rel=1e-5), name
    # The shipped floor holds these sets up; without it they come down toward their darker truth.
    assert no_floor["model"]["delta_e2000"] < shipped["model"]["delta_e2000"]


def test_bracket_floor_is_refused_for_a_family_without_one(studio_val: Path, model_dir: Path) -> None:
    bench = load_benchmark("bench_quality")
    with pytest.raises(SystemExit, match="no bracket exposure floor"):
        bench.quality(str(model_dir), studio_val, bracket_floor=-2.0)


def test_card_and_bracket_floor_together_are_refused() -> None:
    bench = load_benchmark("bench_quality")
    with pytest.raises(SystemExit):
        bench.main(["--card", "--bracket-floor", "-2", "--skip-finetune", "--skip-throughput"])

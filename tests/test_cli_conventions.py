"""Unix-tool conventions of the CLI (issue 13): data on stdout, notes on stderr, -q, --json, and
usage errors refused before any work (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from flambient.cli import main
from flambient.nets.registry import create_model, save_model

from conftest import make_tiny_shoot


@pytest.fixture(scope="module")
def shoot_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_shoot(tmp_path_factory, "conv_shoot", 1, seed=5, fmt="dng", size=(160, 96))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("conv_model") / "tiny"
    save_model(create_model("bilateral", width=8, hidden=8, grid_size=4, luma_bins=4), d)
    return d


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


# ----------------------------------------------------------------------------- data on stdout


def test_models_json_is_data_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json", "-"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)  # stdout holds exactly one JSON document
    assert {f["family"] for f in doc["families"]} >= {"bilateral", "diffusion"}
    assert "default" in {m["name"] for m in doc["models"]}
    assert "{" not in cap.err


def test_listings_go_to_stdout_as_tsv_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    cap = capsys.readouterr()
    rows = [ln.split("\t") for ln in cap.out.splitlines()]
    assert rows[0] == ["preset", "output", "description", "file"]
    assert "studio" in {r[0] for r in rows[1:]}
    assert cap.err == ""
    assert main(["models"]) == 0
    assert any(ln.startswith("bilateral\t") for ln in capsys.readouterr().out.splitlines())


def test_json_file_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "presets.json"
    assert main(["-q", "presets", "--json", str(dest)]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""  # -q: nothing on success
    assert "studio" in {p["name"] for p in json.loads(dest.read_text())["presets"]}


def test_quiet_synth_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "synth", str(tmp_path / "s"), "--sets", "1", "--size", "96x64"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""
    assert main(["synth", str(tmp_path / "s2"), "--sets", "1", "--size", "96x64"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "wrote 3 frames" in cap.err  # a note for people: stderr


def test_process_summary_on_stdout_and_quiet(shoot: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["process", str(shoot), "--model", str(tiny_model), "--devices", "cpu", "--json", "-"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["counts"] == {"done": 1} and doc["sets"][0]["status"] == "done"
    assert "done" in cap.err  # the log (set done) is on stderr
    assert main(["-q", "process", str(shoot), "--model", str(tiny_model), "--devices", "cpu", "--force"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""
    assert main(["process", str(shoot), "--model", str(tiny_model), "--devices", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t") == ["status", "set", "final", "note"]
    assert out[1].startswith("skipped\t")


def test_ingest_json(shoot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(shoot), "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["sets"]) == 1 and doc["manifest"].endswith("manifest.yaml")


# ----------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("args,needle", [
    (["--tile", "130", "--overlap", "100"], "--tile 130 is too small for --overlap 100"),
    (["--tile", "64"], "--tile 64 is out of range"),
    (["--overlap", "-3"], "--overlap -3 is out of range"),
    (["--backend", "tensorrt"], "'tensorrt' is not one of"),
    (["--devices", "cuda:x"], "bad --devices value"),
    (["--jobs", "-1"], "--jobs"),
])
def test_process_usage_errors_stop_before_work(shoot: Path, tiny_model: Path, args: list[str], needle: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["process", str(shoot), "--model", str(tiny_model), *args])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and needle in line
    assert not (shoot / "final").exists() and not (shoot / ".flambient").exists()  # nothing touched


def test_tile_rule_uses_the_models_margin_before_any_set(shoot: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # --tile 128 with margin 50 passes the model-free check (size multiple 1) but not the
    # diffusion family's size multiple 4: refused once the model is loaded, before any set.
    torch.manual_seed(0)
    save_model(create_model("diffusion", width=4, ctx_dim=8, emb_dim=8), tmp_path / "diff")
    rc = main(["process", str(shoot), "--model", str(tmp_path / "diff"), "--devices", "cpu",
               "--tile", "128", "--overlap", "50"])
    err = capsys.readouterr().err  # the ingest's log line comes first (ingest runs before the model loads)
    line = _one_error_line("\n".join(ln for ln in err.splitlines() if ln.startswith("error:")))
    assert rc == 2 and "too small" in line and "diffusion" in line
    assert not list((shoot / "final").glob("*.jpg"))


def test_preset_tiling_uses_the_same_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiling: {tile: 130, overlap: 100}\n")
    assert main(["process", str(tmp_path), "--preset", str(bad)]) == 2
    assert "tiling.tile 130 is too small for tiling.overlap 100" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("cmd", [["train", "DATA", "--out", "OUT"], ["finetune", "--pairs", "DATA", "--out", "OUT"]])
def test_one_device_parser_for_train_and_finetune(tmp_path: Path, cmd: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("DATA", str(tmp_path / "d")).replace("OUT", str(tmp_path / "o")) for a in cmd]
    assert main([*argv, "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in _one_error_line(capsys.readouterr().err)
    assert main([*argv, "--device", "cuda:0,1"]) == 2
    assert "one device only" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("model_config,model,needle", [
    ({"steps": 9}, "diffusion", "steps must be between 1 and 8"),
    ({"steps": 9}, "bilateral", "model_config.steps: unknown key"),
    ({"gird_size": 8}, "bilateral", "model_config.gird_size: unknown key"),
    ({"width": "wide"}, "bilateral", "model_config.width: bad value 'wide'"),
])
def test_train_config_model_config_errors_are_one_line(tmp_path: Path, model_config: dict, model: str, needle: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"model": model, "model_config": model_config}))
    rc = main(["train", str(tmp_path / "no-dataset"), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and needle in line and str(cfg) in line
    assert not (tmp_path / "o").exists()

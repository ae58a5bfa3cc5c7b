"""Unix-tool conventions of the CLI (issue 13): data on stdout, notes on stderr, -q, --json, and
usage errors refused before any work (exit 2, one line)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import typer
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


# ----------------------------------------------------------------------------- issue 16: -q everywhere


@pytest.fixture(scope="module")
def workspace(shoot_src: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny inputs for every command: a shoot, a processed copy, a pairs dataset, a train config."""
    from flambient.synth.shoot import synth_pairs

    root = tmp_path_factory.mktemp("quiet_ws")
    done = root / "done"
    shutil.copytree(shoot_src, done)
    assert main(["-q", "process", str(done), "--model", str(tiny_model), "--devices", "cpu"]) == 0
    synth_pairs(root / "pairs", pairs=2, size=(64, 48), seed=1, style="studio")
    (root / "train.yaml").write_text(yaml.safe_dump({
        "model_config": {"width": 8, "hidden": 8, "grid_size": 4, "luma_bins": 4}, "val_every": 1,
        "previews": 0, "val_max_side": 48, "crop": 32, "batch": 2}))
    (root / "ft.yaml").write_text("style_steps: 3\n")
    return {"shoot": shoot_src, "done": done, "pairs": root / "pairs", "model": tiny_model,
            "train_cfg": root / "train.yaml", "ft_cfg": root / "ft.yaml"}


def _argv(name: str, ws: dict[str, Path], tmp: Path) -> list[str]:
    """A successful, fast invocation of command ``name`` on the workspace (outputs under ``tmp``)."""
    shoot = tmp / "shoot"
    if name in ("ingest", "process", "demo"):
        shutil.copytree(ws["shoot"], shoot)
    m, final = str(ws["model"]), str(ws["done"] / "final")
    return {
        "ingest": ["ingest", str(shoot)],
        "synth": ["synth", "--out", str(tmp / "syn"), "--sets", "1", "--size", "96x64"],
        "train": ["train", str(ws["pairs"]), "--out", str(tmp / "t"), "--family", "bilateral", "--steps", "1",
                  "--config", str(ws["train_cfg"]), "--devices", "cpu"],
        "finetune": ["finetune", "--pairs", str(ws["pairs"]), "--model", m, "--out", str(tmp / "ft"),
                     "--config", str(ws["ft_cfg"]), "--devices", "cpu"],
        "process": ["process", str(shoot), "--model", m, "--devices", "cpu"],
        "eval": ["eval", final, final, "--out", str(tmp / "ev")],
        "export": ["export", m, "--out", str(tmp / "m.onnx")],
        "demo": ["demo", str(shoot), "--model", m, "--devices", "cpu"],
        "models": ["models"],
        "presets": ["presets"],
    }[name]


def _command_names() -> list[str]:
    import typer

    from flambient.cli import app

    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "finetune" else n
                                  for n in _command_names()])  # finetune: ~20 s (cross-validated style fit)
def test_quiet_run_of_every_command_prints_nothing(name: str, workspace: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`-q` after the command name (and, for half of them, before it) silences a successful run."""
    argv = _argv(name, workspace, tmp_path)
    argv = ["-q", *argv] if name < "m" else [*argv, "-q"]
    assert main(argv) == 0, capsys.readouterr().err
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == "", (cap.out, cap.err)


def test_quiet_covers_every_command() -> None:
    assert set(_command_names()) == {"ingest", "synth", "train", "finetune", "process", "eval", "export", "demo",
                                     "models", "presets"}


def test_lines_are_not_wrapped_off_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / ("a-long-folder-name-so-that-the-line-is-longer-than-eighty-columns" * 2)
    assert main(["synth", "-o", str(out), "--sets", "1", "--size", "96x64"]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("wrote 3 frames") and lines[0].endswith("truth")


def test_python_warnings_become_one_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from flambient.log import setup_logging

    with warnings.catch_warnings():  # pytest records warnings itself; give them back to us here
        warnings.simplefilter("always")
        setup_logging()
        try:
            warnings.warn("a library complains\nover two lines", UserWarning, stacklevel=1)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "INFO" in err and "a library complains" in err
            setup_logging(quiet=True)
            warnings.warn("again", UserWarning, stacklevel=1)
            assert capsys.readouterr().err == ""
        finally:
            setup_logging()
            logging.captureWarnings(False)


# ----------------------------------------------------------------------------- issue 16: vocabulary


#: Long name <-> short flag, the same in every command that has either.
VOCABULARY = {"--out": "-o", "--model": "-m", "--preset": "-p", "--devices": "-d", "--jobs": "-j",
              "--quiet": "-q", "--verbose": "-v", "--config": "-c", "--help": "-h"}


def _options(name: str) -> dict[str, list[str]]:
    import typer

    from flambient.cli import app

    cmd = typer.main.get_command(app).commands[name]
    return {p.name or "": [*p.opts, *p.secondary_opts] for p in cmd.params if p.param_type_name == "option"}


@pytest.mark.parametrize("name", _command_names())
def test_one_option_vocabulary(name: str) -> None:
    shorts = {v: k for k, v in VOCABULARY.items()}
    for decls in _options(name).values():
        for d in decls:
            if d in VOCABULARY:
                assert VOCABULARY[d] in decls, f"{name} {d} lacks {VOCABULARY[d]}"
            if d in shorts:
                assert shorts[d] in decls, f"{name} {d} is not {shorts[d]}"
        assert not {"--device", "--workers", "--onnx", "--base"} & set(decls), f"{name}: old spelling {decls}"
    assert {"--quiet", "--verbose"} <= {d for decls in _options(name).values() for d in decls}


def test_deprecated_spellings_still_work_with_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flambient.commands._command import rewrite_deprecated

    assert rewrite_deprecated("train", ["D", "-mlut", "--device=cpu", "--", "--model"]) == (
        ["D", "--family=lut", "--devices=cpu", "--", "--model"], [("-m", "--family"), ("--device", "--devices")])
    assert rewrite_deprecated("finetune", ["-p", "P", "--base", "B"])[0] == ["--pairs", "P", "--model", "B"]
    assert rewrite_deprecated("process", ["-p", "studio"])[0] == ["-p", "studio"]  # -p is --preset there
    assert main(["synth", str(tmp_path / "s"), "--workers", "1", "--sets", "1", "--size", "96x64", "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "synth --workers is deprecated; use --jobs" in err
    assert (tmp_path / "s" / "truth").is_dir()


def test_deprecated_spelling_is_recorded_under_its_new_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model card's command line (rebuilt from the parsed options) uses the new names."""
    import flambient.training as train_mod

    seen: list[str] = []

    def fake_train(dataset, cfg, out, resume=False, command="", extra_commands=(), progress=None, init=None):  # type: ignore[no-untyped-def]
        seen.append(command)
        raise typer.Exit(0)

    monkeypatch.setattr(train_mod, "train_dataset", fake_train)
    assert main(["train", str(tmp_path), "-o", str(tmp_path / "o"), "-m", "lut", "--device", "cpu"]) == 0
    assert seen and "--family lut" in seen[0] and "--devices cpu" in seen[0] and "--model" not in seen[0]


def test_choices_are_shown_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["process", "--help"]) == 0
    assert "torch|onnx" in capsys.readouterr().out
    assert main(["synth", "--help"]) == 0
    out = capsys.readouterr().out
    assert "dng|jpg" in out and "studio|natural" in out


def _strings(tree: "ast.AST") -> "list[tuple[int, str]]":
    import ast

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):  # f-strings: their literal parts
            found.append((node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)))
    return found


#: Options of other programs named in flambient's messages.
FOREIGN_OPTIONS = {"--nproc_per_node"}  # torchrun


def test_every_hint_names_real_options() -> None:
    """Every ``--option`` in flambient's strings (hints, help, docstrings) exists: in the command the
    string names (``flambient CMD``, ```CMD --x```, ``CMD --x``), else in the command module it
    is in, else in some command."""
    import ast
    import re

    import typer

    import flambient
    from flambient.cli import app

    root = typer.main.get_command(app)
    opts = {n: {d for decls in _options(n).values() for d in decls} for n in root.commands}
    global_opts = {d for p in root.params for d in (*p.opts, *p.secondary_opts)} | {"--help"}
    every = set().union(*opts.values()) | global_opts | FOREIGN_OPTIONS
    names = "|".join(opts)
    # "flambient CMD ARGS", "`CMD -x", "CMD --x" (a bare "flambient presets" names no options)
    mention = re.compile(rf"(?:flambient(?:\s+-[qv])*\s+({names})(?=\s+[^\s`'\")]))|(?:`({names})\s+-)"
                         rf"|(?:\b({names})\s+--)")
    option = re.compile(r"(?<![\w-])(?<!var\()(--[a-z][a-z0-9_-]*)(?![\w:-])")  # not CSS (--ar: 1; var(--ar))
    pkg = Path(flambient.__file__).parent
    bad = []
    for f in sorted(pkg.rglob("*.py")):
        if f.name == "_command.py":  # the table of old spellings
            continue
        for line, s in _strings(ast.parse(f.read_text(encoding="utf-8"))):
            named = option.findall(s)
            if not named or re.fullmatch(r"--[a-z][a-z0-9_-]*(=.*)?", s, re.S):  # one argv item, ours or a tool's
                continue
            cmds = {c for groups in mention.findall(s) for c in groups if c}
            if not cmds and f.parent.name == "commands" and f.stem in opts:
                cmds = {f.stem}
            for o in named:
                allowed = global_opts | FOREIGN_OPTIONS | (set().union(*(opts[c] for c in cmds)) if cmds else every)
                if o not in allowed:
                    bad.append(f"{f.relative_to(pkg)}:{line}: {o} (commands {sorted(cmds) or 'any'}): {s[:90]!r}")
    assert not bad, "\n".join(bad)


# ----------------------------------------------------------------------------- issue 16: devices, --json -, cwd


@pytest.mark.parametrize("argv", [["process", "SHOOT", "--devices", "cuda"], ["process", "SHOOT", "-d", "cuda:0"],
                                  ["train", "SHOOT", "--out", "OUT", "--devices", "cuda"],
                                  ["finetune", "--pairs", "SHOOT", "--out", "OUT", "-d", "cuda:0"],
                                  ["demo", "SHOOT", "--devices", "cuda"]])
def test_explicit_cuda_without_a_gpu_is_exit_2(argv: list[str], shoot: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from flambient import devices

    monkeypatch.setattr(devices, "discover_devices", lambda: [devices.CPU])  # no GPU, also on a GPU machine
    argv = [a.replace("SHOOT", str(shoot)).replace("OUT", str(tmp_path / "o")) for a in argv]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no usable CUDA GPU" in line
    assert not (shoot / "final").exists() and not (shoot / ".flambient").exists() and not (tmp_path / "o").exists()


def test_auto_falls_back_to_the_cpu(shoot: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from flambient import devices

    monkeypatch.setattr(devices, "discover_devices", lambda: [devices.CPU])
    assert main(["-q", "process", str(shoot), "--model", str(tiny_model)]) == 0
    assert capsys.readouterr().err == "" and list((shoot / "final").glob("*.jpg"))


def _json_commands() -> set[str]:
    return {n for n in _command_names() if "json_out" in _options(n) or "json_path" in _options(n)}


def test_dash_means_stdout_for_every_json(workspace: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert _json_commands() == {"ingest", "process", "eval", "models", "presets"}
    for name in sorted(_json_commands()):
        argv = _argv(name, workspace, tmp_path / name)
        assert main([*argv, "--json", "-"]) in (0, 1), name
        doc = json.loads(capsys.readouterr().out)
        assert isinstance(doc, dict) and doc, name
        assert not (cwd / "-").exists(), f"{name} wrote a file named '-'"


def test_models_and_presets_do_not_depend_on_the_working_folder(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import flambient

    cwd = tmp_path / "home"
    (cwd / "models" / "decoy").mkdir(parents=True)
    (cwd / "presets").mkdir()
    (cwd / "presets" / "decoy.yaml").write_text("description: must not be found\n")
    env = {**os.environ, "PYTHONPATH": str(Path(flambient.__file__).parents[1]),
           "FLAMBIENT_HOME": str(tmp_path / "user")}
    env.pop("FLAMBIENT_MODELS", None)
    env.pop("FLAMBIENT_PRESETS", None)
    run = [sys.executable, "-m", "flambient"]
    models = json.loads(subprocess.run([*run, "models", "--json", "-"], cwd=cwd, env=env, capture_output=True,
                                       text=True, timeout=120, check=True).stdout)
    presets = json.loads(subprocess.run([*run, "presets", "--json", "-"], cwd=cwd, env=env, capture_output=True,
                                        text=True, timeout=120, check=True).stdout)
    assert "default" in {m["name"] for m in models["models"]} and "decoy" not in {m["name"] for m in models["models"]}
    assert "studio" in {p["name"] for p in presets["presets"]} and "decoy" not in {p["name"] for p in presets["presets"]}


def test_finetune_does_not_replace_a_model_without_force(tiny_model: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    shutil.copytree(tiny_model, out)
    before = (out / "model.pt").read_bytes()
    assert main(["finetune", "--pairs", str(tmp_path / "nopairs"), "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "already" in line and "--force" in line
    assert (out / "model.pt").read_bytes() == before

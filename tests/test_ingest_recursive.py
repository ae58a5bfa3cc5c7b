"""Recursive shoots (issue 16): ``process`` re-ingests the way the manifest was made, and no
scan ever takes a folder flambient wrote (finals, sidecars, summaries, logs, locks) as frames."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from flambient.cli import main
from flambient.errors import InputError
from flambient.ingest import ingest_shoot, is_output_folder, load_manifest, manifest_path, scan_shoot
try:  # the perturbed test model (a fixture): in test_process, or shared through conftest
    from test_process import model_dir  # noqa: F401
except ImportError:
    pass


def _jpeg(path: Path, shade: float, size: tuple[int, int] = (72, 96)) -> Path:
    """A small smooth JPEG without EXIF (one image = one set)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, np.full((h, w), shade)], -1) * 220
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=92)
    return path


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    """``shoot/kitchen/{k1,k2}.jpg`` and ``shoot/bath/b1.jpg``: frames only in sub-folders."""
    root = tmp_path / "shoot"
    for i, rel in enumerate(["kitchen/k1.jpg", "kitchen/k2.jpg", "bath/b1.jpg"]):
        _jpeg(root / rel, 0.2 + 0.25 * i)
    return root


def _summary(out: Path) -> dict:
    """The latest run's summary in either output layout (``OUT/.flambient/summaries/latest.json``
    or ``OUT/flambient-summary.json``)."""
    for p in (out / ".flambient" / "summaries" / "latest.json", out / "flambient-summary.json"):
        if p.is_file():
            return json.loads(p.read_text())
    raise AssertionError(f"no summary in {out}")


def _process(shoot: Path, model: Path, *extra: str) -> int:
    return main(["-q", "process", str(shoot), "--model", str(model), "--devices", "cpu", "-j", "1", *extra])


def test_recursive_shoot_survives_a_touched_file(nested: Path, model_dir: Path) -> None:  # noqa: F811
    assert main(["-q", "ingest", str(nested), "--recursive"]) == 0
    assert _process(nested, model_dir) == 0  # cron: no --recursive, the manifest says so
    first = _summary(nested / "final")
    assert first["counts"] == {"done": 3}
    touched = _jpeg(nested / "bath" / "b1.jpg", 0.9)
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 5))
    assert _process(nested, model_dir) == 0
    again = _summary(nested / "final")
    assert again["counts"] == {"done": 1, "skipped": 2}
    done = [s["name"] for s in again["sets"] if s["status"] == "done"]
    assert len(done) == 1 and done[0].startswith("b1")
    m = load_manifest(nested)
    assert m is not None and m.recursive and sorted(m.files) == ["bath/b1.jpg", "kitchen/k1.jpg", "kitchen/k2.jpg"]


def test_process_recursive_option(nested: Path, model_dir: Path) -> None:  # noqa: F811
    assert _process(nested, model_dir) == 2  # frames only in sub-folders: the hint names --recursive
    assert _process(nested, model_dir, "--recursive") == 0
    assert _summary(nested / "final")["counts"] == {"done": 3}


def test_finals_in_a_nested_out_are_never_frames(nested: Path, model_dir: Path) -> None:  # noqa: F811
    web = nested / "web"
    assert _process(nested, model_dir, "--recursive", "--out", str(web)) == 0
    assert len(list(web.glob("*.jpg"))) == 3
    assert _process(nested, model_dir, "--out", str(web)) == 0
    assert _summary(web)["counts"] == {"skipped": 3}
    m = load_manifest(nested)
    assert m is not None and not any(p.startswith("web/") for p in m.files)
    # a plain ingest that knows nothing of --out still leaves the finals out (output markers)
    m2 = ingest_shoot(nested, recursive=True)
    assert sorted(m2.files) == ["bath/b1.jpg", "kitchen/k1.jpg", "kitchen/k2.jpg"]


def test_both_output_layouts_are_recognised(tmp_path: Path) -> None:
    root = tmp_path / "shoot"
    _jpeg(root / "room.jpg", 0.4)
    side = {"fingerprint": "abc", "final": "x.jpg"}
    # old layout: sidecars, the summary, the log or the lock folder beside the finals
    for name, marker in [("a", "flambient-summary.json"), ("b", "flambient-process.log"),
                         ("c", ".flambient-locks/x.lock"), ("d", "flambient-summary-20260101T000000.json")]:
        _jpeg(root / name / "x.jpg", 0.5)
        (root / name / marker).parent.mkdir(parents=True, exist_ok=True)
        (root / name / marker).write_text("{}")
    _jpeg(root / "e" / "x.jpg", 0.5)
    (root / "e" / "x.jpg.json").write_text(json.dumps(side))  # a final with its sidecar
    _jpeg(root / "e" / "mine.jpg", 0.5)
    (root / "e" / "mine.jpg.json").write_text('{"note": "a user file"}')  # not flambient's sidecar
    # new layout: OUT/.flambient/ holding sidecars (any sub-folder)
    _jpeg(root / "f" / "x.jpg", 0.5)
    (root / "f" / ".flambient" / "sidecars").mkdir(parents=True)
    (root / "f" / ".flambient" / "sidecars" / "x.jpg.json").write_text(json.dumps(side))
    # a sub-shoot ingested on its own is input, not output
    _jpeg(root / "g" / "y.jpg", 0.5)
    (root / "g" / ".flambient" / "cache").mkdir(parents=True)
    (root / "g" / ".flambient" / "manifest.yaml").write_text("format: flambient-manifest\n")
    found = sorted(p.relative_to(root).as_posix() for p in scan_shoot(root, recursive=True))
    assert found == ["e/mine.jpg", "g/y.jpg", "room.jpg"]
    assert [is_output_folder(root / n) for n in "abcdfg"] == [True] * 5 + [False]
    # a final of `process --out SHOOT` at the shoot's top level is not a frame either
    _jpeg(root / "final-room.jpg", 0.5)
    (root / "final-room.jpg.json").write_text(json.dumps(side))
    assert "final-room.jpg" not in [p.name for p in scan_shoot(root)]


def test_old_manifest_without_recursive_keeps_a_flat_scan(tmp_path: Path) -> None:
    root = tmp_path / "shoot"
    _jpeg(root / "top.jpg", 0.3)
    _jpeg(root / "sub" / "inner.jpg", 0.6)
    ingest_shoot(root)
    doc = yaml.safe_load(manifest_path(root).read_text())
    for key in ("recursive", "exclude"):
        doc.pop(key)
    manifest_path(root).write_text(yaml.safe_dump(doc, sort_keys=False))
    m = load_manifest(root)
    assert m is not None and not m.recursive and m.exclude == [] and sorted(m.files) == ["top.jpg"]
    from flambient.ingest import current_manifest

    again = current_manifest(root)
    assert sorted(again.files) == ["top.jpg"]  # fresh: reused, still flat
    _jpeg(root / "top.jpg", 0.9)
    os.utime(root / "top.jpg", (0, 1_000_000_000))
    assert sorted(current_manifest(root).files) == ["top.jpg"]  # stale: re-made flat, as before
    assert sorted(current_manifest(root, recursive=True).files) == ["sub/inner.jpg", "top.jpg"]
    with pytest.raises(InputError):
        scan_shoot(root / "sub" / "inner.jpg")


# ----------------------------------------------------------------------------- progress


def _many(root: Path, n: int) -> Path:
    for i in range(n):
        _jpeg(root / f"img{i:02d}.jpg", 0.1 + 0.8 * i / n, size=(24, 32))
    return root


def test_ingest_reports_progress_through_a_callback(tmp_path: Path) -> None:
    root = _many(tmp_path / "shoot", 6)
    calls: list[tuple[str, int, int]] = []
    ingest_shoot(root, cache=True, n_jobs=2, progress=lambda *a: calls.append(a))
    reading = [c for c in calls if c[0] == "reading"]
    assert [c[1] for c in reading] == list(range(1, 7)) and {c[2] for c in reading} == {6}
    caching = [c for c in calls if c[0] == "caching"]
    assert caching and caching[-1][1] == caching[-1][2] == 6


def test_ingest_progress_lines_off_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _many(tmp_path / "shoot", 20)
    assert main(["ingest", str(root), "-j", "1"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ingest: reading")]
    assert lines[0] == "ingest: reading 2/20" and lines[-1] == "ingest: reading 20/20" and len(lines) == 10
    assert main(["-q", "ingest", str(root), "-j", "1"]) == 0
    assert capsys.readouterr().err == ""


def test_reingest_keeps_the_grouping_settings(tmp_path: Path) -> None:
    from flambient.brackets import GroupingConfig
    from flambient.ingest import current_manifest

    root = tmp_path / "shoot"
    _jpeg(root / "a.jpg", 0.3)
    ingest_shoot(root, config=GroupingConfig(max_gap_s=900.0, use_thumbnails=False))
    os.utime(root / "a.jpg", (0, 1_000_000_000))
    again = current_manifest(root)
    assert again.files["a.jpg"][1] == 1_000_000_000 and again.config.max_gap_s == 900.0
    assert not again.config.use_thumbnails


def test_a_plain_scan_names_the_sub_folders_it_leaves_unread(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Loose frames beside room folders: a scan without --recursive reads the loose frames and
    says, in one warning line, which sub-folders hold images it did not read; a recursive scan,
    hidden folders and flambient's own ``final/`` say nothing."""
    root = tmp_path / "shoot"
    _jpeg(root / "hall.jpg", 0.3)
    for rel in ["kitchen/k1.jpg", "kitchen/k2.jpg", "bath/b1.jpg", ".trash/t.jpg", "final/hall.jpg", "notes/a.txt"]:
        if rel.endswith(".txt"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("not an image")
        else:
            _jpeg(root / rel, 0.5)
    with caplog.at_level("WARNING", logger="flambient.ingest"):
        assert scan_shoot(root) == [root / "hall.jpg"]
    lines = [r.getMessage() for r in caplog.records if "not read" in r.getMessage()]
    assert len(lines) == 1
    assert "3 image(s)" in lines[0] and "bath/ (1)" in lines[0] and "kitchen/ (2)" in lines[0]
    assert ".trash" not in lines[0] and "final" not in lines[0] and "notes" not in lines[0]
    assert "--recursive" in lines[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="flambient.ingest"):
        assert len(scan_shoot(root, recursive=True)) == 4
    assert not [r for r in caplog.records if "not read" in r.getMessage()]


def test_a_synthetic_shoots_truth_folder_is_flambients_own(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``truth/`` of a synthetic shoot (``flambient synth``, ``flambient demo``: ``sets.yaml``
    whose first line names the synth truth format) is output, not frames: no scan reads it and
    the plain scan does not warn about it (the demo's first lines were a warning about its own
    truth). A user's folder with a ``sets.yaml`` of anything else is still a sub-folder of frames."""
    root = tmp_path / "shoot"
    _jpeg(root / "hall.jpg", 0.3)
    _jpeg(root / "truth" / "hall.jpg", 0.6)
    (root / "truth" / "sets.yaml").write_text(yaml.safe_dump({"format": "flambient-synth-truth", "version": 1},
                                                             sort_keys=False))
    _jpeg(root / "rooms" / "k1.jpg", 0.5)
    (root / "rooms" / "sets.yaml").write_text("format: my-own-notes\n")
    assert is_output_folder(root / "truth") and not is_output_folder(root / "rooms")
    with caplog.at_level("WARNING", logger="flambient.ingest"):
        assert scan_shoot(root) == [root / "hall.jpg"]
    lines = [r.getMessage() for r in caplog.records if "not read" in r.getMessage()]
    assert len(lines) == 1 and "rooms/ (1)" in lines[0] and "truth/" not in lines[0]
    assert scan_shoot(root, recursive=True) == [root / "hall.jpg", root / "rooms" / "k1.jpg"]

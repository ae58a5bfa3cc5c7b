"""The batch runner's parts: the pure planner, the output layout, its migration, run summaries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flambient.batch.layout import OutputLayout, migrate_legacy_layout
from flambient.batch.plan import PlanEntry, SetState, plan
from flambient.batch.sidecar import Sidecar, final_ownership, read_sidecar, sidecar_path, write_sidecar
from flambient.config import load_preset
from flambient.output import sha256_file
from flambient.process import ProcessOptions, process_shoot

from conftest import latest_summary, make_tiny_shoot

F = Path("/out/a.jpg")


def _actions(entries: list[PlanEntry], **kw: bool) -> list[tuple[str, str | None]]:
    return [(d.action, d.note) for d in plan(entries, **kw)]


# ----------------------------------------------------------------------------- plan (no model, no files)


def test_plan_decisions() -> None:
    new = PlanEntry("new", F)
    fresh = PlanEntry("fresh", F, SetState(True, "ours"))
    changed = PlanEntry("changed", F, SetState(False, "ours"))
    user = PlanEntry("user", F, SetState(False, "user"))
    user_edit = PlanEntry("edited", F, SetState(True, "user", note="kept: user file (edited since)"))
    broken = PlanEntry("broken", F, error="cannot read input (gone)")
    entries = [new, fresh, changed, user, user_edit, broken]
    assert [a for a, _ in _actions(entries)] == ["todo", "skipped", "todo", "kept", "skipped", "failed"]
    forced = _actions(entries, force=True)
    assert [a for a, _ in forced] == ["todo", "todo", "todo", "kept", "kept", "failed"]  # force never takes a user's file
    dry = _actions(entries, force=True, dry_run=True)
    assert dry[0] == ("would-process", "new") and dry[1] == ("would-process", "forced")
    assert dry[2] == ("would-process", "changed") and dry[3][0] == "kept"
    over = _actions(entries, overwrite_user_files=True)
    assert [a for a, _ in over] == ["todo", "skipped", "todo", "todo", "skipped", "failed"]
    d = plan([broken])[0].result()
    assert d.status == "failed" and d.error == "cannot read input (gone)" and d.final is None
    assert plan([user_edit])[0].result().note == "kept: user file (edited since)"


# ----------------------------------------------------------------------------- sidecars and layout


def _sidecar(final: Path, sha: str | None = None) -> Sidecar:
    return Sidecar(flambient_version="0", set="a", final=final.name, fingerprint="f" * 64, final_sha256=sha)


def test_sidecar_round_trip_and_ownership(tmp_path: Path) -> None:
    final = tmp_path / "a.jpg"
    final.write_bytes(b"pixels")
    assert final_ownership(final)[0] == "user"  # a final without a sidecar
    path = write_sidecar(final, _sidecar(final, sha256_file(final)))
    assert path == tmp_path / ".flambient" / "sidecars" / "a.jpg.json" == sidecar_path(final)
    assert read_sidecar(final) == _sidecar(final, sha256_file(final))
    assert final_ownership(final)[0] == "ours"
    final.write_bytes(b"retouched")
    assert final_ownership(final)[0] == "user"


def test_old_layout_is_moved_in_and_still_recognised(tmp_path: Path) -> None:
    out = tmp_path / "final"
    out.mkdir()
    final = out / "a.jpg"
    final.write_bytes(b"pixels")
    legacy = out / "a.jpg.json"
    legacy.write_text(json.dumps(_sidecar(final, sha256_file(final)).to_doc()))
    (out / "notes.json").write_text('{"mine": 1}')  # a user's JSON stays where it is
    (out / "b.jpg.json").write_text('{"mine": 2}')  # ... and keeps claiming b.jpg
    (out / "flambient-summary.json").write_text('{"counts": {"done": 1}}')
    (out / "flambient-process.log").write_text("old lines\n")
    (out / ".flambient-locks").mkdir()
    assert final_ownership(final)[0] == "ours"  # read in its old place before the move
    layout = OutputLayout(out)
    assert migrate_legacy_layout(layout) == 3
    assert sorted(p.name for p in out.iterdir()) == [".flambient", "a.jpg", "b.jpg.json", "notes.json"]
    assert final_ownership(final)[0] == "ours" and (layout.sidecars / "a.jpg.json").is_file()
    assert final_ownership(out / "b.jpg")[0] == "user"
    assert [json.loads(p.read_text()) for p in layout.summaries.glob("*-legacy.json")] == [{"counts": {"done": 1}}]
    assert (layout.meta / "legacy-process.log").read_text() == "old lines\n"
    assert migrate_legacy_layout(layout) == 0  # idempotent


# ----------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def shoot_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_shoot(tmp_path_factory, "batch_src", 2, seed=7, fmt="jpg")


def _opts(model_dir: Path, **kw: object) -> ProcessOptions:
    return ProcessOptions(preset=load_preset("studio"), model=str(model_dir), devices="cpu", decode_jobs=1, **kw)


def test_delivery_folder_holds_only_finals_and_every_run_keeps_its_summary(shoot: Path, model_dir: Path) -> None:
    out = shoot / "final"
    first = process_shoot(shoot, _opts(model_dir))
    assert first.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([".flambient"] + [Path(r.final).name for r in first.results])
    meta = out / ".flambient"
    assert sorted(p.name for p in meta.iterdir()) == ["locks", "process.log", "sidecars", "summaries"]
    assert not list((meta / "locks").iterdir())
    second = process_shoot(shoot, _opts(model_dir))
    assert second.counts() == {"skipped": 2}
    runs = sorted(p for p in (meta / "summaries").glob("*.json") if p.name != "latest.json")
    assert len(runs) == 2  # the all-skipped rerun did not hide the run that did the work
    assert json.loads(runs[0].read_text())["counts"] == {"done": 2}
    assert latest_summary(out) == json.loads(runs[1].read_text())
    assert latest_summary(out)["counts"] == {"skipped": 2} and latest_summary(out)["interrupted"] is None


def test_old_layout_output_folder_is_skipped_not_redone(shoot: Path, model_dir: Path) -> None:
    """A folder written by an older flambient (sidecars beside the finals) is recognised."""
    out = shoot / "final"
    process_shoot(shoot, _opts(model_dir))
    meta = out / ".flambient"
    for side in (meta / "sidecars").iterdir():  # turn it back into the old layout
        os.rename(side, out / side.name)
    os.rename(meta / "summaries" / "latest.json", out / "flambient-summary.json")
    os.rename(meta / "process.log", out / "flambient-process.log")
    finals = {p: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    again = process_shoot(shoot, _opts(model_dir))
    assert again.counts() == {"skipped": 2}
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.jpg")} == finals
    assert sorted(p.name for p in out.iterdir()) == sorted([".flambient"] + [p.name for p in finals])
    assert len(list((meta / "sidecars").iterdir())) == 2


def test_old_run_summaries_are_pruned_and_the_log_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from flambient.batch import layout as layout_mod
    from flambient.batch import logfile
    from flambient.batch.summary import BatchSummary, SetResult, read_latest_summary, write_summary

    monkeypatch.setattr(layout_mod, "KEEP_SUMMARIES", 2)
    for k in range(4):
        write_summary(BatchSummary(tmp_path, tmp_path, [SetResult(f"s{k}", "done")], "m", "p", 0.0), when=1e9 + k)
    runs = sorted((tmp_path / ".flambient" / "summaries").glob("*.json"))
    assert [p.name for p in runs if p.name != "latest.json"] == [runs[0].name, runs[1].name] and len(runs) == 3
    assert [json.loads(p.read_text())["sets"][0]["name"] for p in runs[:2]] == ["s2", "s3"]  # the newest kept
    assert read_latest_summary(tmp_path)["sets"][0]["name"] == "s3"  # type: ignore[index]

    monkeypatch.setattr(logfile, "LOG_MAX_BYTES", 400)
    lf = logfile.LogFile(OutputLayout(tmp_path).log)
    for k in range(40):
        logging.getLogger("flambient.process").info("line %d of a long cron run", k)
    lf.close()
    logs = sorted((tmp_path / ".flambient").glob("process.log*"))
    assert [p.name for p in logs] == ["process.log", "process.log.1", "process.log.2", "process.log.3"]
    assert all(p.stat().st_size <= 400 for p in logs)

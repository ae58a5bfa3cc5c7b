"""Fault injection and hostile input (issue 15): nothing a user made is ever lost.

Each test reproduces one case of the fault campaign: path traversal from a shared manifest or
dataset index, user files under a final's name, empty/unreadable locks, broken symbolic links
and link loops, unlistable folders, disk full and read-only outputs, temp files of killed
runs, decompression bombs, and the smaller input checks (non-UTF-8 preset, naming template
format specs, --overlap, ingest --pairs over an existing dataset).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from flambient.cli import main
from flambient.config import load_preset, parse_preset
from flambient.dataset import load_dataset, write_index, write_item
from flambient.errors import ConfigError, InputError
from flambient.ingest import ingest_shoot, manifest_path
from flambient.io.atomic import clean_partials
from flambient.io.images import read_linear, write_exr, write_jpeg, write_png, write_tiff16
from flambient.locks import SetLock
from flambient.output import sha256_file
from flambient.process import EXIT_LOCKED, ProcessOptions, process_shoot

from conftest import make_tiny_shoot, sidecar_file

N_SETS = 2


@pytest.fixture(scope="module")
def shoot_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_shoot(tmp_path_factory, "faults_src", N_SETS, seed=5, fmt="jpg")


def _opts(model_dir: Path, **kw) -> ProcessOptions:  # type: ignore[no-untyped-def]
    preset = kw.pop("preset", None) or load_preset("studio")
    return ProcessOptions(preset=preset, model=str(model_dir), devices="cpu", decode_jobs=1, **kw)


def _cli(shoot: Path, model_dir: Path, *extra: str) -> int:
    return main(["-q", "process", str(shoot), "--model", str(model_dir), "--devices", "cpu", *extra])


def _status(summary) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.name: r.status for r in summary.results}


def _edit_manifest(shoot: Path, edit) -> None:  # type: ignore[no-untyped-def]
    ingest_shoot(shoot)
    mp = manifest_path(shoot)
    doc = yaml.safe_load(mp.read_text())
    edit(doc)
    mp.write_text(yaml.safe_dump(doc, sort_keys=False))


# ----------------------------------------------------------------------------- containment


@pytest.mark.parametrize("bad", ["../../outside/precious", "/abs/precious", "..", ".hidden", "a\\b"])
def test_manifest_set_name_cannot_leave_the_output(shoot: Path, model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], bad: str) -> None:
    if bad.startswith("/"):
        bad = str(tmp_path / "abs" / "precious")
    _edit_manifest(shoot, lambda d: d["sets"][0].__setitem__("name", bad))
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert _cli(shoot, model_dir) == 2
    err = capsys.readouterr().err
    assert "manifest.yaml" in err and "unsafe set name" in err
    after = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    # nothing written anywhere but the run's own log line in the output folder
    assert set(after) - set(before) <= {shoot / "final" / ".flambient" / "process.log"}


def test_manifest_frame_path_cannot_read_outside(shoot: Path, model_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.jpg"
    shutil.copy(next(shoot.glob("*.jpg")), secret)
    _edit_manifest(shoot, lambda d: d["sets"][0]["frames"][0].__setitem__("path", "../secret.jpg"))
    assert _cli(shoot, model_dir) == 2
    err = capsys.readouterr().err
    assert "manifest.yaml" in err and "points outside" in err
    assert not (shoot / "final").exists() or not list((shoot / "final").glob("*.jpg"))


def test_dataset_item_paths_stay_inside(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    img = np.full((8, 8, 3), 0.3, np.float32)
    entry = write_item(ds, "a", img, img)
    write_exr(tmp_path / "outside.exr", img)
    write_index(ds, [{**entry, "ambient": "../outside.exr"}])
    with pytest.raises(InputError, match="points outside"):
        load_dataset(ds)
    write_index(ds, [{**entry, "target": str(tmp_path / "outside.exr")}])
    with pytest.raises(InputError, match="points outside"):
        load_dataset(ds)
    write_index(ds, [{**entry, "name": "../x"}])
    with pytest.raises(InputError, match="unsafe item name"):
        load_dataset(ds)
    with pytest.raises(InputError, match="unsafe item name"):
        write_item(ds, "../../escape", img, img)
    assert not (tmp_path / "escape").exists()


# ----------------------------------------------------------------------------- ownership of finals


def test_user_final_is_never_replaced(shoot: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ingest_shoot(shoot)
    names = sorted(s.name for s in __import__("flambient.ingest", fromlist=["x"]).load_manifest(shoot).sets)
    final = shoot / "final"
    final.mkdir()
    mine = final / f"{names[0]}.jpg"
    mine.write_bytes(b"my own retouched final")
    theirs_json = final / f"{names[1]}.jpg.json"
    theirs_json.write_text('{"my": "notes"}')

    assert _cli(shoot, model_dir) == 0
    err = capsys.readouterr().err
    assert mine.read_bytes() == b"my own retouched final"
    assert json.loads(theirs_json.read_text()) == {"my": "notes"}
    assert not (final / f"{names[1]}.jpg").exists()
    assert err.count("kept:") == 2 and "user file" in err  # printed even with -q

    assert _cli(shoot, model_dir, "--force") == 0  # --force never destroys a user's file
    assert mine.read_bytes() == b"my own retouched final"
    assert json.loads(theirs_json.read_text()) == {"my": "notes"}

    s = process_shoot(shoot, _opts(model_dir, overwrite_user_files=True))
    assert _status(s) == {n: "done" for n in names}
    assert mine.read_bytes() != b"my own retouched final"


def test_retouched_final_survives_force_and_preset_change(shoot: Path, model_dir: Path) -> None:
    s1 = process_shoot(shoot, _opts(model_dir))
    assert set(_status(s1).values()) == {"done"}
    name = s1.results[0].name
    final = Path(s1.results[0].final)
    side = json.loads(sidecar_file(final).read_text())
    assert side["final_sha256"] == sha256_file(final)
    final.write_bytes(final.read_bytes() + b"retouch")  # an edit in place, sidecar untouched
    edited = final.read_bytes()

    s2 = process_shoot(shoot, _opts(model_dir))
    r = next(r for r in s2.results if r.name == name)
    assert r.status == "skipped" and "kept: user file" in (r.note or "")
    for kw in ({"force": True}, {"preset": parse_preset({"edit": {"exposure_bias": 0.5}}, name="studio")}):
        s3 = process_shoot(shoot, _opts(model_dir, **kw))
        assert _status(s3)[name] == "kept" and final.read_bytes() == edited
        assert s3.exit_code == 0
        # the other, untouched final is flambient's: --force and a preset change redo it
        assert sorted(_status(s3).values()) == ["done", "kept"]


def test_kill_between_sidecar_and_final_is_still_flambients(shoot: Path, model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import flambient.io.atomic as atomic

    process_shoot(shoot, _opts(model_dir))
    bright = parse_preset({"edit": {"exposure_bias": 0.7}}, name="studio")
    real = atomic.os.replace

    def die_on_final(src, dst):  # type: ignore[no-untyped-def]
        if str(dst).endswith(".jpg"):
            raise KeyboardInterrupt  # as if killed after the sidecar, before the final's rename
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", die_on_final)
    s0 = process_shoot(shoot, _opts(model_dir, preset=bright))
    assert set(_status(s0).values()) == {"failed"}
    sides = [json.loads(p.read_text()) for p in (shoot / "final" / ".flambient" / "sidecars").glob("*.jpg.json")]
    assert all(d["preset"]["edit"]["exposure_bias"] == 0.7 for d in sides)  # new sidecars, old finals
    monkeypatch.setattr(atomic.os, "replace", real)
    s = process_shoot(shoot, _opts(model_dir, preset=bright))
    assert set(_status(s).values()) == {"done"}  # not "kept": the old final is recognised


# ----------------------------------------------------------------------------- locks


def test_empty_old_lock_is_taken_over(shoot: Path, model_dir: Path) -> None:
    ingest_shoot(shoot)
    locks = shoot / "final" / ".flambient" / "locks"
    locks.mkdir(parents=True)
    names = sorted(p.stem for p in shoot.glob("*.jpg"))
    from flambient.ingest import load_manifest

    names = [s.name for s in load_manifest(shoot).sets]
    lock = locks / f"{names[0]}.lock"
    lock.write_bytes(b"")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    s = process_shoot(shoot, _opts(model_dir))
    assert set(_status(s).values()) == {"done"} and s.exit_code == 0


def test_fresh_unreadable_lock_says_locked_with_q(shoot: Path, model_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ingest_shoot(shoot)
    from flambient.ingest import load_manifest

    names = [s.name for s in load_manifest(shoot).sets]
    locks = shoot / "final" / ".flambient" / "locks"
    locks.mkdir(parents=True)
    (locks / f"{names[0]}.lock").write_bytes(b"\x00garbage")
    assert _cli(shoot, model_dir) == EXIT_LOCKED == 4
    err = capsys.readouterr().err
    assert "locked:" in err and names[0] in err and "unreadable lock" in err


def test_lock_is_never_left_empty_when_the_disk_fills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flambient.locks as locks

    def full(*a, **k):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(locks.json, "dump", full)
    lk = SetLock(tmp_path / "locks" / "s.lock")
    with pytest.raises(OSError):
        lk.acquire()
    assert list((tmp_path / "locks").iterdir()) == []  # no empty lock, no temp file


# ----------------------------------------------------------------------------- symlinks, folders


@pytest.mark.parametrize("kind", ["broken", "loop"])
def test_broken_symlink_or_loop_is_a_failed_item_not_an_internal_error(shoot: Path, model_dir: Path, kind: str,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "broken":
        os.symlink(shoot / "gone.jpg", shoot / "zz_link.jpg")
    else:
        os.symlink(shoot / "zz_b.jpg", shoot / "zz_a.jpg")
        os.symlink(shoot / "zz_a.jpg", shoot / "zz_b.jpg")
    for args in ((), ("--force",)):
        assert _cli(shoot, model_dir, *args) == 1
        err = capsys.readouterr().err
        assert "internal error" not in err and "symbolic link" in err
    s = process_shoot(shoot, _opts(model_dir))  # the manifest is fresh and reused
    assert sorted(_status(s).values()).count("skipped") == N_SETS


def test_unlistable_subfolder_is_reported(shoot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = shoot / "locked_room"
    sub.mkdir()
    real = os.scandir

    def scandir(path=".", *a):  # type: ignore[no-untyped-def]
        if Path(path) == sub:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a)

    monkeypatch.setattr(os, "scandir", scandir)
    m = ingest_shoot(shoot, recursive=True)
    assert any(e["path"] == "locked_room" and "cannot list folder" in e["error"] for e in m.errors)


# ----------------------------------------------------------------------------- OS errors


def test_disk_full_is_a_failed_item_with_the_path(shoot: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ingest_shoot(shoot)  # (a full disk while writing the manifest is a one-line error, exit 2)
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if ".partial" in self.name and self.parent.name == "final":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    assert _cli(shoot, model_dir) == 1
    err = capsys.readouterr().err
    assert "internal error" not in err and "No space left on device" in err
    final = shoot / "final"
    assert not list(final.glob("*.jpg")) and not list(final.glob(".*partial*"))


def test_read_only_output_is_one_line_exit_2(shoot: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    real = Path.mkdir
    out = shoot / "final"

    def ro(self: Path, *a, **k):  # type: ignore[no-untyped-def]
        if self == out:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", ro)
    assert _cli(shoot, model_dir) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "Read-only file system" in err and str(out) in err


def test_temp_files_of_killed_runs_are_cleaned(shoot: Path, model_dir: Path) -> None:
    import socket

    host = "".join(c if c.isalnum() or c in "_-" else "_" for c in socket.gethostname())[:40]
    dead = 2**22 + 12345  # beyond the default pid_max: never alive
    final, state = shoot / "final", shoot / ".flambient"
    final.mkdir()
    (state / "cache" / "x").mkdir(parents=True)
    leftovers = [final / f".room.jpg.~{host}~{dead}~abc123.partial.json",
                 final / f".flambient-summary.~{host}~{dead}~q1.partial.json",
                 state / f".manifest.~{host}~{dead}~zz.partial.yaml",
                 state / "cache" / "x" / f".ambient-a.~{host}~{dead}~k9.partial.exr",
                 final / ".room.oldstyle123.partial.jpg"]
    for p in leftovers:
        p.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(leftovers[-1], (old, old))
    young_foreign = final / ".room.~otherhost~1~aa.partial.jpg"  # another machine may be writing it
    young_foreign.write_bytes(b"half")
    process_shoot(shoot, _opts(model_dir))
    assert [p for p in leftovers if p.exists()] == []
    assert young_foreign.exists()
    assert clean_partials(final) == []


# ----------------------------------------------------------------------------- decompression bombs


def _bomb_png(path: Path, w: int, h: int) -> None:
    def chunk(t: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + t + data + zlib.crc32(t + data).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    body = zlib.compress(b"\x00" * 4096)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_png_bomb_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flambient.io.limits as limits

    p = tmp_path / "bomb.png"
    _bomb_png(p, 16000, 16000)
    assert p.stat().st_size < 1000
    monkeypatch.setattr(limits, "available_memory", lambda: 8 << 30)  # 256 MP would need ~12 GB
    with pytest.raises(InputError, match="too large.*GiB"):
        read_linear(p)
    _bomb_png(p, 30000, 30000)  # over the 400 MP pixel limit whatever the memory
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 50)
    with pytest.raises(InputError, match="too large.*900 MP"):
        read_linear(p)


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif", "exr"])
def test_every_reader_honours_the_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    img = np.full((40, 60, 3), 0.4, np.float32)
    p = tmp_path / f"x.{fmt}"
    {"png": write_png, "jpg": write_jpeg, "tif": write_tiff16, "exr": write_exr}[fmt](p, img)
    assert read_linear(p).shape == (40, 60, 3)
    monkeypatch.setenv("FLAMBIENT_MAX_PIXELS", "1000")
    with pytest.raises(InputError, match="exceeds the limit"):
        read_linear(p)


# ----------------------------------------------------------------------------- smaller input checks


def test_non_utf8_preset_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "latin.yaml"
    p.write_bytes("description: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_preset(p)
    assert main(["process", str(tmp_path), "--preset", str(p)]) == 2


@pytest.mark.parametrize("naming", ["{set:.>20}", "{set:x>300}", "{set!r}", "x{set:>5}"])
def test_naming_template_rejects_format_specs(naming: str) -> None:
    with pytest.raises(ConfigError, match="format specs"):
        parse_preset({"output": {"naming": naming}}, name="t")


def test_overlap_is_checked_before_any_work(shoot: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(shoot, model_dir, "--tile", "128", "--overlap", "100") == 2
    assert "is too small for --overlap 100" in capsys.readouterr().err  # tiling.tiling_problem
    assert not list((shoot / "final").glob("*.jpg"))


def test_ingest_pairs_does_not_replace_an_existing_dataset(tmp_path: Path) -> None:
    src = tmp_path / "pairs"
    src.mkdir()
    img = np.random.default_rng(0).uniform(0.1, 0.8, (32, 48, 3)).astype(np.float32)
    write_png(src / "room_src.png", img)
    write_png(src / "room_target.png", img)
    out = tmp_path / "ds"
    out.mkdir()
    (out / "dataset.yaml").write_text("precious: index\n")
    assert main(["ingest", "--pairs", str(src), "--out", str(out)]) == 2
    assert (out / "dataset.yaml").read_text() == "precious: index\n"
    assert main(["ingest", "--pairs", str(src), "--out", str(out), "--force"]) == 0
    assert "flambient-dataset" in (out / "dataset.yaml").read_text()


# ----------------------------------------------------------------------------- cron output


def test_cron_output_one_line_per_problem(tmp_path: Path, shoot: Path, model_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (shoot / "bad.jpg").write_bytes(b"garbage")
    assert _cli(shoot, model_dir) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "bad.jpg" in ln]
    assert len(lines) == 1 and "unknown file format (expected RAW, JPEG, PNG, TIFF or EXR)" in lines[0], err
    log = (shoot / "final" / ".flambient" / "process.log").read_text()
    assert "flambient.ingest: bad.jpg" in log and "bad.jpg failed" in log  # the log file keeps both


def test_libraw_chatter_goes_to_the_log_not_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from conftest import shared_file

    src = shared_file("raw-metadata-stubs-exiftool", "Nikon.nef")
    p = tmp_path / "Nikon.nef"
    shutil.copy(src, p)
    from flambient.io.raw import decode_raw_u16

    with caplog.at_level("INFO", logger="flambient.libraw"), pytest.raises(InputError):
        decode_raw_u16(p)
    out, err = capfd.readouterr()
    assert "data corrupted" not in err and "data corrupted" not in out
    assert any("LibRaw:" in r.getMessage() and "data corrupted" in r.getMessage() for r in caplog.records)


def test_full_disk_under_the_log_file_is_one_warning(shoot: Path, model_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    def full(self, record):  # type: ignore[no-untyped-def]
        try:
            raise OSError(errno.ENOSPC, "No space left on device", self.baseFilename)
        except OSError:
            self.handleError(record)

    from flambient import process as proc

    monkeypatch.setattr(proc._QuietFileHandler, "emit", full)
    assert _cli(shoot, model_dir) == 0
    err = capsys.readouterr().err
    assert err.count("cannot write the log file") == 1 and "Traceback" not in err
    assert logging.raiseExceptions  # the handler, not a global switch, keeps tracebacks away


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("this must never run",))


def test_model_with_python_objects_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model.pt holding pickled objects is refused by safe loading with a message of our own
    (not torch's advice to turn safe loading off), and nothing in it runs."""
    import torch

    from flambient.errors import ModelError
    from flambient.nets.registry import load_model

    torch.save({"format": "flambient-model", "x": _Evil()}, tmp_path / "model.pt")
    with pytest.raises(ModelError) as err:
        load_model(tmp_path / "model.pt")
    msg = str(err.value)
    assert "safe loading refuses" in msg and "weights_only" not in msg.lower()
    assert "this must never run" not in capsys.readouterr().out

"""Cron safety: a killed run leaves no partial final and resumes; two runs share a folder; locks."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from flambient.locks import SetLock

from conftest import latest_summary, make_tiny_shoot, process_cmd

N_SETS = 6


@pytest.fixture(scope="module")
def shoot_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_shoot(tmp_path_factory, "cshoot", N_SETS, seed=11, fmt="dng")


def _done_lines(shoot: Path) -> Counter:
    text = (shoot / "final" / ".flambient" / "process.log").read_text()
    return Counter(re.findall(r"process: (\S+) done$", text, flags=re.M))


@pytest.mark.slow
def test_killed_run_leaves_no_partial_final_and_rerun_completes(shoot_src: Path, model_dir: Path,
                                                                 tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    shutil.copytree(shoot_src, shoot)
    locks = shoot / "final" / ".flambient" / "locks"
    proc = subprocess.Popen(process_cmd(shoot, model_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if locks.is_dir() and any(locks.glob("*.lock")):  # a set is in flight
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    final = shoot / "final"
    assert not (final / ".flambient" / "summaries" / "latest.json").exists()  # killed mid-batch
    visible = sorted(final.glob("*.jpg"))
    assert len(visible) < N_SETS
    for f in visible:  # every final under its real name is complete
        with Image.open(f) as im:
            im.load()
    assert any(locks.glob("*.lock"))  # the dead owner's lock is still there

    rc = subprocess.run(process_cmd(shoot, model_dir), capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    doc = latest_summary(final)
    assert doc["exit_code"] == 0 and len(doc["sets"]) == N_SETS
    assert {s["status"] for s in doc["sets"]} <= {"done", "skipped"}
    assert len(list(final.glob("*.jpg"))) == N_SETS and not list(final.glob(".*partial*"))
    assert not list(locks.glob("*.lock"))


@pytest.mark.slow
def test_two_processes_do_every_set_exactly_once(shoot_src: Path, model_dir: Path, tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    shutil.copytree(shoot_src, shoot)
    procs = [subprocess.Popen(process_cmd(shoot, model_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode in (0, 4), err  # 4: some sets were left to the other run's lock
        assert p.returncode == 0 or "locked:" in err
    done = _done_lines(shoot)
    names = sorted(p.stem for p in (shoot / "final").glob("*.jpg"))
    assert len(names) == N_SETS
    assert sorted(done) == names and set(done.values()) == {1}, done


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    a = SetLock(tmp_path / "s.lock")
    b = SetLock(tmp_path / "s.lock")
    assert a.acquire() and not b.acquire()
    assert a.still_held() and b.owner()["pid"] == os.getpid()  # type: ignore[index]
    a.release()
    assert not (tmp_path / "s.lock").exists()
    assert b.acquire() and b.still_held()
    b.release()


def test_stale_locks_are_taken_over(tmp_path: Path) -> None:
    import socket

    p = tmp_path / "s.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    p.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "token": "x"}))
    lk = SetLock(p)
    assert lk.acquire() and lk.still_held()
    lk.release()

    # Another host's lock: taken over only once its heartbeat is old.
    p.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "y"}))
    assert not SetLock(p, stale_after=60).acquire()
    old = time.time() - 120
    os.utime(p, (old, old))
    lk2 = SetLock(p, stale_after=60)
    assert lk2.acquire()
    lk2.release()


def test_heartbeat_keeps_lock_fresh(tmp_path: Path) -> None:
    p = tmp_path / "s.lock"
    lk = SetLock(p, stale_after=2.5)
    assert lk.acquire()
    old = time.time() - 100
    os.utime(p, (old, old))
    time.sleep(1.2)  # heartbeat period is stale_after / 5 = 0.5 s
    assert time.time() - p.stat().st_mtime < 2.0
    lk.release()

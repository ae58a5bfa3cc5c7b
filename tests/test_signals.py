"""SIGINT / SIGTERM mid-batch on a real ``python -m flambient process``: a clean stop, then a rerun."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from flambient.output import sha256_file

from conftest import latest_summary, make_tiny_shoot, process_cmd, sidecar_file

N_SETS = 10


@pytest.fixture(scope="module")
def shoot_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_shoot(tmp_path_factory, "sigshoot", N_SETS, seed=13, fmt="jpg")


def _stop_mid_batch(shoot: Path, model: Path, sig: int) -> subprocess.CompletedProcess[str]:
    """Start ``process``, send ``sig`` once the first final is published, wait for the exit."""
    out = shoot / "final"
    proc = subprocess.Popen(process_cmd(shoot, model), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None and not any(out.glob("*.jpg")):
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be stopped"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_batch_stops_cleanly_and_rerun_completes(shoot: Path, model_dir: Path, sig: int) -> None:
    out = shoot / "final"
    res = _stop_mid_batch(shoot, model_dir, sig)
    assert res.returncode == 128 + sig, res.stderr
    assert "terminate called" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not list((out / ".flambient" / "locks").glob("*.lock"))  # every lock released
    assert not list(shoot.rglob(".*partial*"))  # no temporary file anywhere
    doc = latest_summary(out)
    assert doc["interrupted"] == signal.Signals(sig).name and doc["exit_code"] == 128 + sig
    status = {s["name"]: s["status"] for s in doc["sets"]}
    assert len(status) == N_SETS and set(status.values()) <= {"done", "interrupted"}
    done = sorted(n for n, s in status.items() if s == "done")
    assert done and len(done) < N_SETS
    finals = sorted(out.glob("*.jpg"))
    assert [f.stem for f in finals] == done  # exactly the finished sets have a final
    for f in finals:  # each complete, and the one its sidecar names
        with Image.open(f) as im:
            im.load()
        assert json.loads(sidecar_file(f).read_text())["final_sha256"] == sha256_file(f)

    again = subprocess.run(process_cmd(shoot, model_dir), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    doc2 = latest_summary(out)
    status2 = {s["name"]: s["status"] for s in doc2["sets"]}
    assert sorted(n for n, s in status2.items() if s == "skipped") == done
    assert sorted(n for n, s in status2.items() if s == "done") == sorted(set(status) - set(done))
    assert len(list(out.glob("*.jpg"))) == N_SETS

"""Fault campaign: ``kill -9`` a running ``flambient process`` at random moments, then recover.

Makes a small synthetic shoot with ``flambient synth`` and runs ``flambient process`` on a copy
of it without interruption: the reference finals (sha256 of each). Then, per trial, on a fresh
copy of the shoot: start ``flambient process``, ``SIGKILL`` it after a random delay (uniform
over 40-100 % of the reference run's wall time), sometimes kill the resuming run too
(``--double``: probability of a second kill), and finally run ``flambient process`` to the end.
After the final run it checks:

- every final is byte-identical to the reference (``identical``), or ``different``, or ``lost``;
- the final run's exit status is 0 and no set is ``failed``, ``kept`` or ``locked``;
- no temporary file (``*.partial*``) is left anywhere in the shoot, no lock in ``final/``.

Right after each kill it also counts what the kill left behind (temp files, locks, finals), so
the table shows what recovery had to clean. Prints a rich table and writes JSON (``--json``,
default benchmarks/results/faults.json).

Usage: ``python benchmarks/bench_faults.py [--trials 10] [--sets 4] [--size 384x256]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flambient.io.atomic import atomic_write_text
from flambient.log import console

PY = sys.executable


def _flambient(*args: str) -> list[str]:
    return [PY, "-m", "flambient", "-q", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def finals_of(shoot: Path) -> dict[str, str]:
    """``{name: sha256}`` of the visible finals in ``SHOOT/final``."""
    out: dict[str, str] = {}
    for p in sorted((shoot / "final").glob("*.jpg")):
        out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(shoot: Path) -> tuple[list[str], list[str]]:
    """Temporary files anywhere in the shoot, and lock files in ``final/.flambient/locks``."""
    temps = [str(p.relative_to(shoot)) for p in shoot.rglob(".*partial*")]
    lock_dir = shoot / "final" / ".flambient" / "locks"
    locks = [p.name for p in lock_dir.glob("*.lock")] if lock_dir.is_dir() else []
    return sorted(temps), sorted(locks)


def run_killed(shoot: Path, delay: float) -> float:
    """Start ``process``, SIGKILL it after ``delay`` s; returns when it actually died (s), or -1
    when it had already finished."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(_flambient("process", str(shoot), "--devices", "cpu"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return -1.0
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return time.perf_counter() - t0


def run_full(shoot: Path) -> tuple[int, float, dict[str, Any]]:
    """Run ``process`` to the end; ``(exit status, seconds, summary JSON)``."""
    t0 = time.perf_counter()
    rc = subprocess.run(_flambient("process", str(shoot), "--devices", "cpu"), env=_env(),
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).returncode
    dt = time.perf_counter() - t0
    try:
        doc = json.loads((shoot / "final" / ".flambient" / "summaries" / "latest.json").read_text())
    except (OSError, ValueError):
        doc = {}
    return rc, dt, doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--sets", type=int, default=6)
    ap.add_argument("--size", default="384x256", help="frame size WIDTHxHEIGHT")
    ap.add_argument("--double", type=float, default=0.3, help="probability of killing the resuming run too")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "faults.json")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="bench_faults_") as td:
        work = Path(td)
        src = work / "src"
        subprocess.run(_flambient("synth", str(src), "--sets", str(args.sets), "--size", args.size,
                                  "--format", "dng", "--seed", str(args.seed)), check=True, env=_env())
        shutil.rmtree(src / "truth")
        ref = work / "ref"
        shutil.copytree(src, ref)
        rc, ref_s, ref_doc = run_full(ref)
        if rc != 0:
            raise SystemExit(f"reference run failed with exit status {rc}")
        reference = finals_of(ref)
        console.print(f"reference: {len(reference)} finals in {ref_s:.1f} s")

        trials: list[dict[str, Any]] = []
        for k in range(args.trials):
            shoot = work / f"t{k}"
            shutil.copytree(src, shoot)
            kills = []
            for attempt in range(2):
                if attempt == 1 and rng.random() >= args.double:
                    break
                delay = rng.uniform(0.4, 1.0) * ref_s  # the first ~40 % is mostly imports
                died = run_killed(shoot, delay)
                temps, locks = leftovers(shoot)
                kills.append({"delay_s": round(delay, 2), "killed": died >= 0, "finals": len(finals_of(shoot)),
                              "temps": len(temps), "locks": len(locks)})
            rc, dt, doc = run_full(shoot)
            got = finals_of(shoot)
            temps, locks = leftovers(shoot)
            statuses = [s.get("status") for s in doc.get("sets", [])]
            trials.append({
                "trial": k,
                "kills": kills,
                "exit": rc,
                "identical": sum(1 for n, h in reference.items() if got.get(n) == h),
                "different": sum(1 for n, h in reference.items() if n in got and got[n] != h),
                "lost": sum(1 for n in reference if n not in got),
                "extra": sorted(set(got) - set(reference)),
                "bad_status": sorted({s for s in statuses if s in ("failed", "kept", "locked")}),
                "temps_left": temps,
                "locks_left": locks,
                "recover_s": round(dt, 2),
            })
            shutil.rmtree(shoot)

    from rich.table import Table

    table = Table(title=f"kill -9 campaign: {args.trials} trials, {args.sets} sets of {args.size} DNG frames")
    for col in ("trial", "kills at (s)", "left by kill: finals/temps/locks", "exit", "identical", "lost",
                "temps left", "locks left"):
        table.add_column(col)
    for t in trials:
        killed = [k for k in t["kills"] if k["killed"]]
        table.add_row(str(t["trial"]), ", ".join(f"{k['delay_s']:.1f}" for k in killed) or "(finished first)",
                      "; ".join(f"{k['finals']}/{k['temps']}/{k['locks']}" for k in killed) or "-",
                      str(t["exit"]), f"{t['identical']}/{len(reference)}", str(t["lost"]),
                      str(len(t["temps_left"])), str(len(t["locks_left"])))
    console.print(table)
    n_kills = sum(1 for t in trials for k in t["kills"] if k["killed"])
    totals = {
        "trials": len(trials),
        "kills": n_kills,
        "kills_leaving_temps": sum(1 for t in trials for k in t["kills"] if k["killed"] and k["temps"]),
        "kills_leaving_locks": sum(1 for t in trials for k in t["kills"] if k["killed"] and k["locks"]),
        "finals_expected": len(reference) * len(trials),
        "finals_identical": sum(t["identical"] for t in trials),
        "finals_different": sum(t["different"] for t in trials),
        "finals_lost": sum(t["lost"] for t in trials),
        "temps_left": sum(len(t["temps_left"]) for t in trials),
        "locks_left": sum(len(t["locks_left"]) for t in trials),
        "nonzero_exits": sum(1 for t in trials if t["exit"] != 0),
        "bad_statuses": sum(1 for t in trials if t["bad_status"]),
    }
    console.print(json.dumps(totals))
    doc = {"benchmark": "faults", "host": platform.node(), "python": platform.python_version(),
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "reference_s": round(ref_s, 2), "totals": totals, "trials": trials}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
    console.print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()

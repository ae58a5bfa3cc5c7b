"""One ``process`` run over a list of sets: survey, :func:`~flambient.batch.plan.plan`, claim, pipeline.

:class:`Runner` gathers the facts (:meth:`Runner.survey`: hashes of inputs and finals), lets the
pure planner decide, and sends the sets to do through the pipeline
(:func:`flambient.batch.pipeline.run_pipeline`), which claims each set with its lock
(:meth:`Runner.claim`, deciding again under the lock) and runs the injectable
:class:`~flambient.batch.stages.Stages`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..backends import Backend
from ..brackets import BracketSet
from ..config import Preset
from ..devices import Device, parse_devices, resolve_devices
from ..errors import ConfigError, describe_os_error
from ..inference import backend_class, load_backend
from ..locks import DEFAULT_STALE_AFTER, SetLock
from ..log import REPORTED_LATER, get_logger
from ..outcome import ItemError
from ..safepath import check_name, contained
from ..tiling import tiling_problem
from .fingerprint import fingerprint, input_hashes
from .layout import OutputLayout
from .plan import TODO, PlanEntry, SetState, decide, plan
from .sidecar import final_ownership, legacy_sidecar_path, sidecar_path
from .stages import Interrupted, Job, RunContext, Stages
from .summary import BatchSummary, SetResult

log = get_logger("process")

#: Builds the stages of a run from its context (the :class:`Stages` class, or a subclass).
StagesFactory = Callable[[RunContext], Stages]


@dataclass
class ProcessOptions:
    """Everything ``process`` needs besides the shoot folder.

    ``model`` None = the preset's model; ``tile``/``overlap`` None = the preset's; ``shard``
    is ``(i, n)`` with 1 <= i <= n; ``decode_jobs`` threads decode the frames of one set.
    """

    preset: Preset
    model: str | None = None
    backend: str = "torch"
    devices: str = "auto"
    out: Path | None = None
    force: bool = False
    dry_run: bool = False
    shard: tuple[int, int] | None = None
    tile: int | None = None
    overlap: int | None = None
    use_cache: bool = True
    decode_jobs: int | None = None
    stale_after: float = DEFAULT_STALE_AFTER
    #: Replace files under a final's name that flambient did not write (or that were edited).
    overwrite_user_files: bool = False
    #: Ingest sub-folders too (a shoot ingested with ``--recursive`` is re-ingested so anyway).
    recursive: bool = False


def error_text(exc: BaseException) -> str:
    """One line for a set's failure: the project's message, the OS error with its path, or the type
    (:meth:`flambient.outcome.ItemError.from_exception`)."""
    return str(ItemError.from_exception("", exc))


def validate_tiling(backend: Backend, tile: int | None, overlap: int | None, model_name: str | None = None) -> None:
    """Raise :class:`ConfigError` before any set when ``tile`` cannot hold ``overlap`` for this model.

    The one rule is :func:`flambient.tiling.tiling_problem`, here with the model's own margin
    (when ``overlap`` is None) and size multiple; the ranges were checked by the CLI/preset.
    """
    spec = backend.spec
    if not spec.tileable:
        return
    problem = tiling_problem(tile, spec.overlap if overlap is None else int(overlap), spec.size_multiple,
                             ranges=False)
    if problem is not None:
        raise ConfigError(f"{problem[0]} for model {model_name or spec.family} ({spec.family})", hint=problem[1])


def open_backends(opts: ProcessOptions, model_name: str) -> tuple[list[Device], list[Backend]]:
    """The devices of the run and one backend per device, each opened on the device its class's
    rule gives (:meth:`~flambient.backends.Backend.device_for`)."""
    devices = [Device("cpu", "CPU")] if opts.dry_run else resolve_devices(opts.devices)
    cls = backend_class(model_name, opts.backend)
    requested = parse_devices(opts.devices)[0]
    return devices, [load_backend(model_name, opts.backend, cls.device_for(d, devices, requested)) for d in devices]


class Runner:
    """One ``process`` run (see :func:`flambient.process.process_shoot`)."""

    def __init__(self, shoot: Path, opts: ProcessOptions, progress: Callable[[SetResult], None] | None = None,
                 on_tile: Callable[[str, int, int], None] | None = None,
                 stages: StagesFactory | None = None, stop: threading.Event | None = None) -> None:
        self.shoot = shoot
        self.opts = opts
        self.preset = opts.preset
        self.out = Path(opts.out) if opts.out else shoot / "final"
        self.layout = OutputLayout(self.out)
        self.model_name = opts.model or self.preset.model
        self.tile = opts.tile if opts.tile is not None else self.preset.tiling.tile
        self.overlap = opts.overlap if opts.overlap is not None else self.preset.tiling.overlap
        self.progress = progress
        self.on_tile = on_tile
        self.stages_factory: StagesFactory = stages or Stages
        self.stop = stop or threading.Event()
        self.results: dict[str, SetResult] = {}
        self._lock = threading.Lock()

    def record(self, res: SetResult) -> None:
        """Keep one item's result, log it and report it to the progress callback."""
        with self._lock:
            self.results[res.name] = res
        level = logging.ERROR if res.status == "failed" else logging.INFO
        extra = f": {res.error}" if res.error else (f" ({res.note})" if res.note else "")
        log.log(level, "%s %s%s", res.name, res.status, extra,
                extra=REPORTED_LATER if res.status in ("failed", "kept", "locked") else None)
        if self.progress is not None:
            self.progress(res)

    def final_for(self, bset: BracketSet) -> Path:
        """The set's final in the output folder (name checked: a plain file name inside OUT)."""
        name = self.preset.final_name(bset.name, Path(self.model_name).name or self.model_name)
        where = self.preset.path or "the preset's output.naming"
        return contained(self.out, check_name(name, where, "final name"), where, "final name")

    def lock_for(self, bset: BracketSet) -> SetLock:
        """The set's lock in ``OUT/.flambient/locks/``."""
        name = check_name(f"{bset.name}.lock", None, "lock name")
        return SetLock(self.layout.locks / name, self.opts.stale_after)

    def state(self, bset: BracketSet, final: Path, model_sha: str) -> SetState:
        """Hash inputs and final; decide freshness and who owns the file under the final's name."""
        owner, side, final_sha = final_ownership(final)
        inputs = input_hashes(bset, self.shoot, side.inputs if side is not None else None)
        fp = fingerprint(inputs, model_sha, self.preset.to_dict(), self.tile, self.overlap)
        fresh = owner == "ours" and side is not None and side.fingerprint == fp and final_sha == side.final_sha256
        if owner == "user" and side is not None and side.fingerprint == fp and final_sha is not None:
            why = ("edited since flambient wrote it" if side.final_sha256 is not None
                   else "written by a flambient that recorded no hash")
            return SetState(True, owner, inputs, fp, f"kept: user file ({why})")
        return SetState(fresh, owner, inputs, fp)

    def survey(self, sets: list[BracketSet], model_sha: str) -> list[PlanEntry]:
        """The planner's view of every set (a new set's inputs are hashed later, in the decode thread)."""
        entries: list[PlanEntry] = []
        for bset in sets:
            final = self.final_for(bset)
            if not any(map(os.path.lexists, (final, sidecar_path(final), legacy_sidecar_path(final)))):
                entries.append(PlanEntry(bset.name, final))
                continue
            try:
                entries.append(PlanEntry(bset.name, final, self.state(bset, final, model_sha)))
            except OSError as exc:
                entries.append(PlanEntry(bset.name, final, error=f"cannot read input ({describe_os_error(exc)})"))
        return entries

    def claim(self, bset: BracketSet, model_sha: str) -> Job | None:
        """Lock the set, then decide again: another process may have finished it meanwhile."""
        final = self.final_for(bset)
        lock = self.lock_for(bset)
        if not lock.acquire():
            owner = lock.owner() or {}
            if owner.get("unreadable"):
                note = f"locked by an unreadable lock file {lock.path} ({owner.get('age', 0):.0f} s old)"
            else:
                note = f"being processed by {owner.get('host', '?')} pid {owner.get('pid', '?')}"
            self.record(SetResult(bset.name, "locked", final=str(final), note=note))
            return None
        try:
            st = self.state(bset, final, model_sha)
        except BaseException:
            lock.release()
            raise
        d = decide(bset.name, final, st, force=self.opts.force, overwrite_user_files=self.opts.overwrite_user_files,
                   skipped_note="done by another process")
        if d.action != TODO:
            lock.release()
            self.record(d.result())
            return None
        return Job(bset, final, lock, st.inputs, st.fp)

    def fail(self, job: Job, exc: BaseException) -> None:
        """Record a claimed set's failure (or interruption) and release its lock."""
        job.lock.release()
        job.parts = job.srgb = None
        if isinstance(exc, Interrupted):
            self.record(SetResult(job.bset.name, "interrupted", final=str(job.final), note=str(exc),
                                  timings=job.timings))
            return
        log.debug("set %s failed", job.bset.name, exc_info=exc)
        self.record(SetResult(job.bset.name, "failed", error=error_text(exc), timings=job.timings))

    def run(self, sets: list[BracketSet], ingest_errors: list[dict[str, Any]]) -> BatchSummary:
        """Plan and process ``sets``; the summary lists every set and every ingest error."""
        from .pipeline import run_pipeline

        t_start = time.perf_counter()
        for e in ingest_errors:
            self.record(SetResult(str(e.get("path")), "failed", error=str(e.get("error"))))
        devices, backends = open_backends(self.opts, self.model_name)
        validate_tiling(backends[0], self.tile, self.overlap, self.model_name)
        model_sha = backends[0].fingerprint()
        log.info("model %s; %d set(s); output %s", backends[0].describe(), len(sets), self.out)
        by_name = {b.name: b for b in sets}
        todo: list[BracketSet] = []
        for d in plan(self.survey(sets, model_sha), force=self.opts.force, dry_run=self.opts.dry_run,
                      overwrite_user_files=self.opts.overwrite_user_files):
            if d.action == TODO:
                todo.append(by_name[d.name])
            else:
                self.record(d.result())
        if todo:
            ctx = RunContext(self.shoot, self.out, self.preset, self.model_name, model_sha, self.tile, self.overlap,
                             use_cache=self.opts.use_cache, decode_jobs=self.opts.decode_jobs,
                             overwrite_user_files=self.opts.overwrite_user_files, on_tile=self.on_tile,
                             stop=self.stop)
            run_pipeline(self, todo, devices, backends, self.stages_factory(ctx), model_sha)
        order = {s.name: k for k, s in enumerate(sets)}
        results = sorted(self.results.values(), key=lambda r: (order.get(r.name, -1), r.name))
        return BatchSummary(self.shoot, self.out, results, self.model_name, self.preset.name,
                            time.perf_counter() - t_start)


"""The batch runner behind ``flambient process``: idempotent, resumable, cron-safe.

For a shoot folder: reuse the fresh manifest (or ingest on the fly), pick this shard's sets,
and for each set decide ``skip`` (its final exists and its sidecar's fingerprint of inputs,
model and preset matches) or ``process``. Sets to process are claimed with a per-set lock
(:mod:`flambient.locks`), decoded by a background thread (the next set decodes while the
devices compute; at most ``devices + 1`` sets are in memory), run by one worker per device
(:func:`flambient.inference.infer_image`, tiles assembled on demand from the decoded frames),
then finished, encoded and written atomically (final, then sidecar) by an encode pool.

A failing set is recorded (``failed`` with its error) and the batch goes on; files that ingest
could not read are reported as failed items too. ``OUT/flambient-summary.json`` lists every
item with its status and timings; ``OUT/flambient-process.log`` gets one line per event.

Ownership of finals: the sidecar records the sha256 of the final flambient wrote
(``final_sha256``). A final is replaced only when it is flambient's and unchanged since
(:func:`flambient.output.final_ownership`); anything else (a user's own file under that name,
a retouched final, a final without its sidecar) is kept, the set is reported ``kept`` and no
new final is written, unless ``overwrite_user_files``. The sidecar is written while the new
final still sits under its temporary name and names both the new and the replaced final's
hashes, so a run killed between the two renames still recognises its own final.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .brackets import BracketSet
from .config import Preset
from .devices import Device, parse_devices, resolve_devices
from .errors import ConfigError, InputError, describe_os_error
from .inference import Backend, PartsStack, infer_image, load_backend
from .io.atomic import atomic_write_text, clean_partials
from .locks import DEFAULT_STALE_AFTER, SetLock
from .log import REPORTED_LATER, get_logger, reported_later
from .outcome import EXIT_LOCKED, ItemError, batch_exit_code  # noqa: F401  (EXIT_LOCKED: also read from here)
from .output import (edit_post, final_metadata, final_ownership, finish, read_sidecar, sha256_file, sidecar_path,
                     write_final, write_sidecar)
from .safepath import check_name, contained
from .tiling import tiling_problem

log = get_logger("process")

SUMMARY_NAME = "flambient-summary.json"
LOG_NAME = "flambient-process.log"
LOCK_DIR = ".flambient-locks"
#: Sets larger than this (pixels) decode their frames one after the other to bound memory.
LARGE_SET_PIXELS = 30_000_000
#: Bumped when the output of an unchanged set would differ (invalidates every fingerprint).
PIPELINE_VERSION = 1


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


@dataclass
class SetResult:
    """The outcome of one item.

    ``status``: ``done``, ``skipped`` (up to date), ``failed``, ``kept`` (a user's file holds
    the final's name; nothing written), ``locked`` (another worker holds the set's lock), or
    ``would-process`` in a dry run.
    """

    name: str
    status: str
    final: str | None = None
    error: str | None = None
    note: str | None = None
    device: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def item_error(self) -> ItemError:
        """This result as the shared per-item failure record (:class:`flambient.outcome.ItemError`)."""
        return ItemError(self.name, self.error or self.note or self.status)


@dataclass
class BatchSummary:
    """All results of a run, in set order, plus where the finals went."""

    shoot: Path
    out: Path
    results: list[SetResult]
    model: str
    preset: str
    seconds: float
    #: Every input file: its set, role, status and final, or why it has none (:mod:`flambient.accounting`).
    inputs: list[dict[str, Any]] = field(default_factory=list)
    #: Run-level problems that are not one item's (e.g. the summary could not be written).
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any item failed (or a run-level problem), else 4 (:data:`EXIT_LOCKED`) when
        sets were left to another worker's lock, else 0 (:func:`flambient.outcome.batch_exit_code`)."""
        return batch_exit_code([r.item_error() for r in self.results if r.status == "failed"],
                               locked=sum(r.status == "locked" for r in self.results), problems=len(self.problems))

    def counts(self) -> dict[str, int]:
        """Number of items per status."""
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


# ----------------------------------------------------------------------------- helpers


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``; raises :class:`ConfigError` unless 1 <= i <= n."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"bad --shard value '{text}'", hint="use i/n with 1 <= i <= n, e.g. 1/3") from None
    if not 1 <= i <= n:
        raise ConfigError(f"bad --shard value '{text}'", hint="use i/n with 1 <= i <= n, e.g. 1/3")
    return i, n


def shard_sets(sets: list[BracketSet], shard: tuple[int, int] | None) -> list[BracketSet]:
    """This shard's sets: the ``i``-th of every ``n`` in name order (deterministic everywhere)."""
    ordered = sorted(sets, key=lambda s: s.name)
    if shard is None:
        return ordered
    i, n = shard
    return [s for k, s in enumerate(ordered) if k % n == i - 1]


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


def _model_files(backend: Backend) -> list[Path]:
    path = getattr(backend, "path", None)
    if path is None:
        return []
    files = [Path(path)]
    ctx = getattr(backend, "context_path", None)
    if ctx is not None:
        files.append(Path(ctx))
    return files


def model_fingerprint(backend: Backend) -> str:
    """sha256 over the model's files (weights; context graph for ONNX), or its weights in memory."""
    h = hashlib.sha256()
    files = _model_files(backend)
    if files:
        for f in files:
            h.update(sha256_file(f).encode())
    else:
        net = getattr(backend, "net", None)
        if net is None:
            return "unknown"
        for k, v in sorted(net.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def input_hashes(bset: BracketSet, shoot: Path, previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``[{path, size, mtime, sha256}]`` of the set's files; hashes reused when size and mtime match."""
    old = {d.get("path"): d for d in (previous or {}).get("inputs", []) if isinstance(d, dict)}
    out: list[dict[str, Any]] = []
    for f in bset.frames:
        st = f.path.stat()  # OSError (vanished file, broken link): the caller fails the set
        try:
            rel = f.path.relative_to(shoot).as_posix()
        except ValueError:
            rel = str(f.path)
        prev = old.get(rel)
        if prev and prev.get("size") == st.st_size and prev.get("mtime") == st.st_mtime and prev.get("sha256"):
            digest = str(prev["sha256"])
        else:
            digest = sha256_file(f.path)
        out.append({"path": rel, "role": f.role, "size": st.st_size, "mtime": st.st_mtime, "sha256": digest})
    return out


def fingerprint(inputs: list[dict[str, Any]], model_sha: str, preset: dict[str, Any], tile: Any, overlap: Any) -> str:
    """sha256 of what decides a final: input hashes, model hash, preset settings, tiling."""
    doc = {"pipeline": PIPELINE_VERSION, "inputs": [(d["path"], d["sha256"]) for d in inputs],
           "model": model_sha, "preset": preset, "tile": tile, "overlap": overlap}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- the runner


@dataclass
class _State:
    """Where one set stands: ``fresh`` (final up to date and untouched), ``owner`` of the file
    under the final's name (``absent``, ``ours``, ``user``: see :func:`final_ownership`)."""

    fresh: bool
    owner: str
    inputs: list[dict[str, Any]]
    fp: str
    note: str = ""


@dataclass
class _Job:
    bset: BracketSet
    final: Path
    lock: SetLock
    inputs: list[dict[str, Any]]
    fp: str
    timings: dict[str, float] = field(default_factory=dict)
    parts: Any = None
    srgb: np.ndarray | None = None


class _Runner:
    """One ``process`` run (see :func:`process_shoot`)."""

    def __init__(self, shoot: Path, opts: ProcessOptions, progress: Callable[[SetResult], None] | None,
                 on_tile: Callable[[str, int, int], None] | None = None) -> None:
        self.shoot = shoot
        self.opts = opts
        self.preset = opts.preset
        self.out = Path(opts.out) if opts.out else shoot / "final"
        self.model_name = opts.model or self.preset.model
        self.tile = opts.tile if opts.tile is not None else self.preset.tiling.tile
        self.overlap = opts.overlap if opts.overlap is not None else self.preset.tiling.overlap
        self.progress = progress
        self.on_tile = on_tile
        self.results: dict[str, SetResult] = {}
        self._lock = threading.Lock()
        self.post = edit_post(self.preset.edit)
        #: Finished sets' output buffers, reused by the next sets (at most one per set in flight).
        self._buffers: list[np.ndarray] = []

    def record(self, res: SetResult) -> None:
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
        name = check_name(f"{bset.name}.lock", None, "lock name")
        return SetLock(self.out / LOCK_DIR / name, self.opts.stale_after)

    # ------------------------------------------------------------------ planning
    def state(self, bset: BracketSet, final: Path, model_sha: str) -> _State:
        """Hash inputs and final; decide freshness and who owns the file under the final's name."""
        owner, side, final_sha = final_ownership(final)
        inputs = input_hashes(bset, self.shoot, side)
        fp = fingerprint(inputs, model_sha, self.preset.to_dict(), self.tile, self.overlap)
        fresh = (owner == "ours" and side is not None and side.get("fingerprint") == fp
                 and final_sha == side.get("final_sha256"))
        if owner == "user" and side is not None and side.get("fingerprint") == fp and final_sha is not None:
            why = ("edited since flambient wrote it" if "final_sha256" in side
                   else "written by a flambient that recorded no hash")
            return _State(True, owner, inputs, fp, f"kept: user file ({why})")
        return _State(fresh, owner, inputs, fp)

    def up_to_date(self, bset: BracketSet, final: Path, model_sha: str) -> tuple[bool, list[dict[str, Any]], str]:
        """``(fresh, inputs, fingerprint)`` of a set (see :meth:`state`)."""
        st = self.state(bset, final, model_sha)
        return st.fresh, st.inputs, st.fp

    def _kept(self, bset: BracketSet, final: Path, why: str) -> SetResult:
        return SetResult(bset.name, "kept", final=str(final),
                         note=f"user file ({why}); new final not written (--overwrite-user-files replaces it)")

    def _user_file_blocks(self, st: _State) -> bool:
        return st.owner == "user" and not self.opts.overwrite_user_files

    # ------------------------------------------------------------------ stages
    def decode(self, job: _Job) -> None:
        from .ingest import load_set_parts

        t0 = time.perf_counter()
        ref = job.bset.reference_frame
        jobs = self.opts.decode_jobs
        if jobs is None and ref.height * ref.width > LARGE_SET_PIXELS:
            jobs = 1  # one frame at a time: LibRaw's buffers for a 60 MP frame are ~1 GB each
        job.parts = load_set_parts(self.shoot, job.bset, use_cache=self.opts.use_cache, n_jobs=jobs)
        job.timings["decode"] = time.perf_counter() - t0

    def compute(self, job: _Job, backend: Backend) -> None:
        src = PartsStack(*job.parts)
        cb = self.on_tile
        job.srgb = infer_image(backend, src, tile=self.tile, overlap=self.overlap, post=self.post,
                               timings=job.timings,
                               on_tile=(lambda d, n: cb(job.bset.name, d, n)) if cb is not None else None,
                               out=self._take_buffer((src.height, src.width, 3)))
        job.parts = None  # free the frames before finishing

    def _take_buffer(self, shape: tuple[int, int, int]) -> np.ndarray | None:
        """A finished set's output buffer of this shape, if one is free (None: allocate anew)."""
        with self._lock:
            for i, buf in enumerate(self._buffers):
                if buf.shape == shape:
                    return self._buffers.pop(i)
        return None

    def _give_buffer(self, buf: np.ndarray) -> None:
        with self._lock:
            self._buffers = [buf, *self._buffers][:2]

    def encode(self, job: _Job, device: str, model_sha: str, backend: Backend) -> SetResult:
        t0 = time.perf_counter()
        assert job.srgb is not None
        buf, job.srgb = job.srgb, None
        img = finish(buf, self.preset.output)
        if not job.lock.still_held():
            return SetResult(job.bset.name, "locked", note="lock was taken over by another process; result discarded")
        for stale in self.out.glob(f".{glob.escape(job.final.stem)}.*.partial*"):
            stale.unlink(missing_ok=True)  # left by a killed run of this set (we hold its lock)
        owner, _side, old_sha = final_ownership(job.final)  # again: a user may have saved one meanwhile
        if owner == "user" and not self.opts.overwrite_user_files:
            self._give_buffer(buf)
            return self._kept(job.bset, job.final, "appeared while the set was processed")
        if owner == "user":
            log.warning("%s: replacing a file flambient did not write (--overwrite-user-files)", job.final)
        size = [int(img.shape[1]), int(img.shape[0])]
        side_doc = self._sidecar_doc(job, device, model_sha, backend, size)

        def publish(new_sha: str, tmp: Path) -> None:  # the final is complete under its temporary name
            job.timings["encode"] = time.perf_counter() - t0
            job.timings = {k: round(v, 4) for k, v in job.timings.items()}
            job.timings["total"] = round(sum(job.timings.values()), 4)
            side_doc["timings"] = job.timings
            side_doc["final_sha256"] = new_sha
            st = tmp.stat()  # a rename keeps size and mtime: later runs need not re-read the final
            side_doc["final_stat"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            side_doc["replaces_sha256"] = old_sha if owner == "ours" else None
            write_sidecar(job.final, side_doc)

        write_final(job.final, img, self.preset.output, final_metadata(job.bset, self.preset, self.model_name),
                    before_publish=publish)
        del img
        self._give_buffer(buf)
        return SetResult(job.bset.name, "done", final=str(job.final), device=device, timings=job.timings)

    def _sidecar_doc(self, job: _Job, device: str, model_sha: str, backend: Backend,
                     size: list[int]) -> dict[str, Any]:
        return {
            "flambient_version": __version__,
            "set": job.bset.name,
            "final": job.final.name,
            "size": size,
            "model": {"name": self.model_name, "family": backend.spec.family, "sha256": model_sha,
                      "backend": getattr(backend, "name", "torch")},
            "preset": self.preset.to_dict(),
            "tiling": {"tile": self.tile, "overlap": self.overlap},
            "inputs": job.inputs,
            "reference": job.bset.reference_frame.path.name,
            "device": device,
            "host": socket.gethostname(),
            "timings": job.timings,
            "fingerprint": job.fp,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "final_sha256": None,
            "final_stat": None,
            "replaces_sha256": None,
        }

    def _backend_device(self, device: Device, devices: list[Device]) -> str:
        """The device name handed to the backend.

        GPUs are discovered through torch; a CPU-only torch beside onnxruntime-gpu sees none.
        With ``--devices auto`` and the onnx backend, onnxruntime then picks its own provider
        (TensorRT, CUDA, CPU) instead of being pinned to the CPU.
        """
        onnx = self.opts.backend == "onnx" or str(self.model_name).lower().endswith(".onnx")
        auto = parse_devices(self.opts.devices)[0] == "auto"
        if onnx and auto and not any(d.is_cuda for d in devices):
            return "auto"
        return device.name

    # ------------------------------------------------------------------ run
    def run(self, sets: list[BracketSet], ingest_errors: list[dict[str, Any]]) -> BatchSummary:
        t_start = time.perf_counter()
        for e in ingest_errors:
            self.record(SetResult(str(e.get("path")), "failed", error=str(e.get("error"))))
        devices = [Device("cpu", "CPU")] if self.opts.dry_run else resolve_devices(self.opts.devices)
        backends = [load_backend(self.model_name, self.opts.backend, self._backend_device(d, devices)) for d in devices]
        validate_tiling(backends[0], self.tile, self.overlap, self.model_name)
        model_sha = model_fingerprint(backends[0])
        log.info("model %s; %d set(s); output %s", backends[0].describe(), len(sets), self.out)
        todo: list[BracketSet] = []
        for bset in sets:
            final = self.final_for(bset)
            if not os.path.lexists(final) and not os.path.lexists(sidecar_path(final)):
                # new: inputs are hashed later, in the decode thread
                if self.opts.dry_run:
                    self.record(SetResult(bset.name, "would-process", final=str(final), note="new"))
                else:
                    todo.append(bset)
                continue
            try:
                st = self.state(bset, final, model_sha)
            except OSError as exc:
                self.record(SetResult(bset.name, "failed", error=f"cannot read input ({describe_os_error(exc)})"))
                continue
            if st.fresh and not self.opts.force:
                self.record(SetResult(bset.name, "skipped", final=str(final), note=st.note or "up to date"))
            elif self._user_file_blocks(st):
                self.record(self._kept(bset, final, "not written by flambient, or changed since"))
            elif self.opts.dry_run:
                self.record(SetResult(bset.name, "would-process", final=str(final),
                                      note="forced" if st.fresh else "changed"))
            else:
                todo.append(bset)
        if todo:
            self._pipeline(todo, devices, backends, model_sha)
        order = {s.name: k for k, s in enumerate(sets)}
        results = sorted(self.results.values(), key=lambda r: (order.get(r.name, -1), r.name))
        return BatchSummary(self.shoot, self.out, results, self.model_name, self.preset.name,
                            time.perf_counter() - t_start)

    def _claim(self, bset: BracketSet, model_sha: str) -> _Job | None:
        """Lock the set, then (re)check it: another process may have finished it meanwhile."""
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
        if st.fresh and not self.opts.force:
            lock.release()
            self.record(SetResult(bset.name, "skipped", final=str(final), note=st.note or "done by another process"))
            return None
        if self._user_file_blocks(st):
            lock.release()
            self.record(self._kept(bset, final, "not written by flambient, or changed since"))
            return None
        return _Job(bset, final, lock, st.inputs, st.fp)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        job.lock.release()
        job.parts = job.srgb = None
        log.debug("set %s failed", job.bset.name, exc_info=exc)
        self.record(SetResult(job.bset.name, "failed", error=error_text(exc), timings=job.timings))

    def _pipeline(self, todo: list[BracketSet], devices: list[Device],
                  backends: list[Backend], model_sha: str) -> None:
        """Decode thread -> bounded queue -> one worker per device -> encode pool."""
        self.out.mkdir(parents=True, exist_ok=True)
        slots = threading.Semaphore(len(devices) + 1)  # sets in memory at once
        ready: queue.Queue[_Job | None] = queue.Queue()
        encoder = ThreadPoolExecutor(max_workers=max(1, min(2, len(devices))), thread_name_prefix="encode")

        def producer() -> None:
            try:
                for bset in todo:
                    slots.acquire()
                    job = None
                    try:
                        job = self._claim(bset, model_sha)
                        if job is None:
                            slots.release()
                            continue
                        self.decode(job)
                        ready.put(job)
                    except BaseException as exc:  # one bad set fails alone
                        slots.release()
                        if job is not None:
                            self._fail(job, exc)
                        else:
                            self.record(SetResult(bset.name, "failed", error=error_text(exc)))
            finally:
                for _ in devices:
                    ready.put(None)

        def finish_job(job: _Job, device: str, backend: Backend) -> None:
            try:
                self.record(self.encode(job, device, model_sha, backend))
                job.lock.release()
            except BaseException as exc:
                self._fail(job, exc)
            finally:
                slots.release()

        def worker(device: Device, backend: Backend) -> None:
            while True:
                job = ready.get()
                if job is None:
                    return
                try:
                    self.compute(job, backend)
                except BaseException as exc:
                    self._fail(job, exc)
                    slots.release()
                    continue
                encoder.submit(finish_job, job, device.name, backend)

        threads = [threading.Thread(target=producer, name="decode", daemon=True)]
        threads += [threading.Thread(target=worker, args=(d, b), name=f"device-{d.name}", daemon=True)
                    for d, b in zip(devices, backends)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        encoder.shutdown(wait=True)


# ----------------------------------------------------------------------------- entry points


def load_manifest_for_run(shoot: Path, recursive: bool = False, out: Path | None = None,
                          progress: Callable[[str, int, int], None] | None = None) -> Any:
    """The shoot's :class:`~flambient.ingest.Manifest`: the fresh one, or a new ingest made the
    way the old one was (:func:`flambient.ingest.current_manifest`; ``out`` is never scanned)."""
    from .ingest import current_manifest

    with reported_later("ingest"):  # its per-file errors come back as failed items
        return current_manifest(shoot, recursive=recursive, exclude=[out] if out is not None else [],
                                progress=progress)


def load_sets(shoot: Path) -> tuple[list[BracketSet], list[dict[str, Any]]]:
    """The shoot's sets and ingest errors (see :func:`load_manifest_for_run`)."""
    m = load_manifest_for_run(shoot)
    return m.sets, m.errors


def write_summary(summary: BatchSummary) -> Path:
    """Write ``OUT/flambient-summary.json`` (:func:`summary_doc`) atomically; returns its path."""
    return atomic_write_text(summary.out / SUMMARY_NAME, json.dumps(summary_doc(summary), indent=2) + "\n")


def summary_doc(summary: BatchSummary) -> dict[str, Any]:
    """The summary document (``flambient-summary.json``, ``process --json``)."""
    return {
        "flambient_version": __version__,
        "shoot": str(summary.shoot),
        "out": str(summary.out),
        "model": summary.model,
        "preset": summary.preset,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(summary.seconds, 3),
        "counts": summary.counts(),
        "exit_code": summary.exit_code,
        "sets": [asdict(r) for r in summary.results],
        "inputs": summary.inputs,
        "problems": summary.problems,
    }


def _account(manifest: Any, summary: BatchSummary, processed: set[str],
             errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every input file of the shoot with its set and outcome (:func:`flambient.accounting.account_inputs`)."""
    from .accounting import account_inputs

    def rel(p: Path) -> str:
        try:
            return p.relative_to(manifest.shoot).as_posix()
        except ValueError:
            return str(p)

    inputs = account_inputs(sorted(manifest.files), manifest.sets, manifest.errors, manifest.grouping,
                            summary.results, rel, processed)
    mine = {str(e.get("path")) for e in errors}  # this shard's share of the unreadable files
    for e in inputs:
        if "set" not in e and e["path"] not in mine:
            e["status"] = "other shard"
    return inputs


class _QuietFileHandler(logging.FileHandler):
    """A file handler that, when the disk fills or the file vanishes, stops logging to it once
    (with one line on the terminal) instead of printing a traceback per record."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if getattr(self, "_broken", False):
            return
        self._broken = True
        import sys

        exc = sys.exc_info()[1]
        why = describe_os_error(exc) if isinstance(exc, OSError) else type(exc).__name__
        log.warning("cannot write the log file (%s); logging to it stopped", why)  # not back here: _broken


class _LogFile:
    """Appends the run's log lines to ``OUT/flambient-process.log`` (host and pid on every line)."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.handler = _QuietFileHandler(out / LOG_NAME, encoding="utf-8")
        fmt = f"%(asctime)s {socket.gethostname()}[{os.getpid()}] %(levelname)s %(name)s: %(message)s"
        self.handler.setFormatter(logging.Formatter(fmt))
        self.handler.setLevel(logging.INFO)
        self.logger = get_logger()
        if self.logger.level == logging.NOTSET or self.logger.level > logging.INFO:
            self._old_level: int | None = self.logger.level
            self.logger.setLevel(logging.INFO)
            for h in self.logger.handlers:  # keep the terminal as quiet as it was
                if h.level == logging.NOTSET:
                    h.setLevel(self._old_level or logging.WARNING)
        else:
            self._old_level = None
        self.logger.addHandler(self.handler)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
        if self._old_level is not None:
            self.logger.setLevel(self._old_level)


def process_shoot(shoot: str | Path, opts: ProcessOptions,
                  progress: Callable[[SetResult], None] | None = None,
                  on_plan: Callable[[int], None] | None = None,
                  on_tile: Callable[[str, int, int], None] | None = None,
                  on_ingest: Callable[[str, int, int], None] | None = None) -> BatchSummary:
    """Process every set of ``shoot`` (this shard's) with ``opts``; returns the summary.

    Writes finals, sidecars, ``flambient-summary.json`` and the log file into the output
    folder (not in a dry run). ``progress`` is called once per finished item; ``on_plan``
    with the number of items before work starts; ``on_tile(set, done, total)`` per tile;
    ``on_ingest(stage, done, total)`` while the shoot is (re-)ingested. Raises :class:`InputError` /
    :class:`ConfigError` / :class:`~flambient.errors.ModelError` for problems that stop the
    whole run (missing folder, bad model); per-set problems end up in the summary.
    """
    root = Path(shoot).resolve()
    if not root.is_dir():
        raise InputError("shoot folder not found" if not root.exists() else "not a folder", root)
    runner = _Runner(root, opts, progress, on_tile)
    try:
        logfile = None if opts.dry_run else _LogFile(runner.out)
    except OSError as exc:
        raise InputError(f"cannot write to the output folder ({describe_os_error(exc, with_path=False)})",
                         runner.out, "check free space and permissions, or pass --out") from None
    if not opts.dry_run:  # temp files of killed runs: finals, sidecars, summary, locks, manifest, cache
        for folder, deep in ((runner.out, False), (runner.out / LOCK_DIR, False), (root / ".flambient", True)):
            clean_partials(folder, recursive=deep)
    try:
        manifest = load_manifest_for_run(root, opts.recursive, runner.out, on_ingest)
        all_sets, errors = manifest.sets, manifest.errors
        sets = shard_sets(all_sets, opts.shard)
        if opts.shard is not None:
            errors = [e for k, e in enumerate(sorted(errors, key=lambda e: str(e.get("path"))))
                      if k % opts.shard[1] == opts.shard[0] - 1]
        if on_plan is not None:
            on_plan(len(sets) + len(errors))
        summary = runner.run(sets, errors)
        summary.inputs = _account(manifest, summary, {b.name for b in sets}, errors)
        if not opts.dry_run:
            try:
                write_summary(summary)
            except OSError as exc:  # disk full, read-only: the run's results still reach the caller
                summary.problems.append(f"cannot write {SUMMARY_NAME} ({describe_os_error(exc)})")
                log.error("%s", summary.problems[-1])
        return summary
    finally:
        if logfile is not None:
            logfile.close()

"""The three stages a claimed set goes through: decode, compute, encode (:class:`Stages`).

The pipeline (:mod:`flambient.batch.pipeline`) calls them from its threads: ``decode`` in the
decode thread, ``compute`` in the worker of a device, ``encode`` in the encode pool. They are
the public injection point of the runner: ``process_shoot(..., stages=MyStages)`` with a
subclass that overrides one stage (to fail a set, count calls, or stub the model in tests).
"""

from __future__ import annotations

import glob
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..backends import Backend
from ..brackets import BracketSet
from ..config import Preset
from ..inference import PartsStack, TilePost, infer_image
from ..locks import SetLock
from ..log import get_logger
from ..output import edit_post, final_metadata, finish, write_final
from .plan import KEPT_NOTE
from .sidecar import Sidecar, final_ownership, sidecar_path, write_sidecar
from .summary import SetResult

log = get_logger("process")

#: Sets larger than this (pixels) decode their frames one after the other to bound memory.
LARGE_SET_PIXELS = 30_000_000


class Interrupted(Exception):
    """A stage saw the run's stop flag (SIGINT/SIGTERM) and gave up its set."""


@dataclass
class Job:
    """One claimed set on its way through the stages.

    ``parts``: the decoded frames (:func:`flambient.ingest.load_set_parts`), dropped after
    compute; ``srgb``: the stitched sRGB ``H x W x 3`` float32 final before finishing.
    """

    bset: BracketSet
    final: Path
    lock: SetLock
    inputs: list[dict[str, Any]]
    fp: str
    timings: dict[str, float] = field(default_factory=dict)
    parts: Any = None
    srgb: np.ndarray | None = None


@dataclass
class RunContext:
    """What the stages of one run share (built by the runner)."""

    shoot: Path
    out: Path
    preset: Preset
    model_name: str
    model_sha: str
    tile: int | None
    overlap: int | None
    use_cache: bool = True
    decode_jobs: int | None = None
    overwrite_user_files: bool = False
    on_tile: Callable[[str, int, int], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class Stages:
    """The default decode / compute / encode of ``process`` (subclass to inject)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.post: TilePost | None = edit_post(ctx.preset.edit)
        self._lock = threading.Lock()
        #: Finished sets' output buffers, reused by the next sets (at most one per set in flight).
        self._buffers: list[np.ndarray] = []

    # ------------------------------------------------------------------ decode
    def decode(self, job: Job) -> None:
        """Decode the set's frames into ``job.parts`` (linear, one frame at a time for large sets)."""
        from ..ingest import load_set_parts

        t0 = time.perf_counter()
        ref = job.bset.reference_frame
        jobs = self.ctx.decode_jobs
        if jobs is None and ref.height * ref.width > LARGE_SET_PIXELS:
            jobs = 1  # one frame at a time: LibRaw's buffers for a 60 MP frame are ~1 GB each
        job.parts = load_set_parts(self.ctx.shoot, job.bset, use_cache=self.ctx.use_cache, n_jobs=jobs)
        job.timings["decode"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ compute
    def compute(self, job: Job, backend: Backend) -> None:
        """Run the model tile by tile into ``job.srgb``; raises :class:`Interrupted` between tiles
        once the run's stop flag is set."""
        src = PartsStack(*job.parts)
        cb, stop, name = self.ctx.on_tile, self.ctx.stop, job.bset.name

        def on_tile(done: int, total: int) -> None:
            if cb is not None:
                cb(name, done, total)
            if stop.is_set() and done < total:
                raise Interrupted("stopped mid-set")

        job.srgb = infer_image(backend, src, tile=self.ctx.tile, overlap=self.ctx.overlap, post=self.post,
                               timings=job.timings, on_tile=on_tile,
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

    # ------------------------------------------------------------------ encode
    def encode(self, job: Job, device: str, backend: Backend) -> SetResult:
        """Finish, encode and publish the final (sidecar first, then the final's rename)."""
        t0 = time.perf_counter()
        assert job.srgb is not None
        buf, job.srgb = job.srgb, None
        img = finish(buf, self.ctx.preset.output)
        if not job.lock.still_held():
            return SetResult(job.bset.name, "locked", note="lock was taken over by another process; result discarded")
        _remove_stale_partials(job.final)
        owner, _side, old_sha = final_ownership(job.final)  # again: a user may have saved one meanwhile
        if owner == "user" and not self.ctx.overwrite_user_files:
            self._give_buffer(buf)
            return SetResult(job.bset.name, "kept", final=str(job.final),
                             note=KEPT_NOTE.format(why="appeared while the set was processed"))
        if owner == "user":
            log.warning("%s: replacing a file flambient did not write (--overwrite-user-files)", job.final)
        side = self.sidecar(job, device, backend, [int(img.shape[1]), int(img.shape[0])])

        def publish(new_sha: str, tmp: Path) -> None:  # the final is complete under its temporary name
            job.timings["encode"] = time.perf_counter() - t0
            job.timings = {k: round(v, 4) for k, v in job.timings.items()}
            job.timings["total"] = round(sum(job.timings.values()), 4)
            st = tmp.stat()  # a rename keeps size and mtime: later runs need not re-read the final
            side.timings, side.final_sha256 = job.timings, new_sha
            side.final_stat = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            side.replaces_sha256 = old_sha if owner == "ours" else None
            write_sidecar(job.final, side)

        write_final(job.final, img, self.ctx.preset.output,
                    final_metadata(job.bset, self.ctx.preset, self.ctx.model_name), before_publish=publish)
        del img
        self._give_buffer(buf)
        return SetResult(job.bset.name, "done", final=str(job.final), device=device, timings=job.timings)

    def sidecar(self, job: Job, device: str, backend: Backend, size: list[int]) -> Sidecar:
        """The set's sidecar before publishing (hashes and timings are filled in at publish)."""
        c = self.ctx
        return Sidecar(
            flambient_version=__version__, set=job.bset.name, final=job.final.name, fingerprint=job.fp,
            size=size,
            model={"name": c.model_name, "family": backend.spec.family, "sha256": c.model_sha,
                   "backend": backend.name},
            preset=c.preset.to_dict(), tiling={"tile": c.tile, "overlap": c.overlap}, inputs=job.inputs,
            reference=job.bset.reference_frame.path.name, device=device, host=socket.gethostname(),
            timings=job.timings, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def _remove_stale_partials(final: Path) -> None:
    """Temporary files of a killed run of this set (the caller holds its lock)."""
    for folder, stem in ((final.parent, final.stem), (sidecar_path(final).parent, final.name)):
        for stale in folder.glob(f".{glob.escape(stem)}.*.partial*"):
            stale.unlink(missing_ok=True)

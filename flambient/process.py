"""The batch runner behind ``flambient process``: idempotent, resumable, cron-safe (entry point).

For a shoot folder: reuse the fresh manifest (or ingest on the fly), pick this shard's sets,
and plan each set (:func:`flambient.batch.plan.plan`): ``skip`` (its final exists and its
sidecar's fingerprint of inputs, model and preset matches) or process it. Sets to process are
claimed with a per-set lock (:mod:`flambient.locks`), decoded by a background thread (the next set
decodes while the devices compute; at most ``devices + 1`` sets are in memory), run by one worker
per device (:func:`flambient.inference.infer_image`, tiles assembled on demand from the decoded
frames), then finished, encoded and written atomically (sidecar, then final) by an encode pool;
the stages are injectable (:class:`flambient.batch.stages.Stages`).

A failing set is recorded (``failed`` with its error) and the batch goes on; files that ingest
could not read are reported as failed items too. SIGINT/SIGTERM stop the run cleanly (sets in
flight ``interrupted``, locks released, summary written, exit 130/143).

The delivery folder holds only finals; the bookkeeping is under ``OUT/.flambient/``
(:mod:`flambient.batch.layout`): ``sidecars/``, ``summaries/`` (one per run and
``latest.json``), ``locks/`` and the rotated ``process.log``. An output folder of an older
version (sidecars, summary and log beside the finals) is moved in on the next run.

Ownership of finals: the sidecar records the sha256 of the final flambient wrote
(``final_sha256``). A final is replaced only when it is flambient's and unchanged since
(:func:`flambient.batch.sidecar.final_ownership`); anything else (a user's own file under that
name, a retouched final, a final without its sidecar) is kept, the set is reported ``kept`` and
no new final is written, unless ``overwrite_user_files``. The sidecar is written while the new
final still sits under its temporary name and names both the new and the replaced final's
hashes, so a run killed between the two renames still recognises its own final.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Callable

from .batch.fingerprint import PIPELINE_VERSION, fingerprint, input_hashes
from .batch.layout import migrate_legacy_layout
from .batch.logfile import LogFile
from .batch.logfile import QuietFileHandler as _QuietFileHandler  # noqa: F401 (tests patch it here)
from .batch.runner import ProcessOptions, Runner, StagesFactory, error_text, validate_tiling
from .batch.signals import RunInterrupted, StopFlag, stop_on_signals
from .batch.stages import LARGE_SET_PIXELS, Job, RunContext, Stages
from .batch.summary import EXIT_LOCKED, BatchSummary, SetResult, read_latest_summary, summary_doc, write_summary
from .brackets import BracketSet
from .errors import ConfigError, InputError, describe_os_error
from .io.atomic import clean_partials
from .log import get_logger, reported_later

__all__ = ["EXIT_LOCKED", "LARGE_SET_PIXELS", "PIPELINE_VERSION", "BatchSummary", "Job", "ProcessOptions",
           "RunContext", "SetResult", "Stages", "StagesFactory", "error_text", "fingerprint", "input_hashes",
           "load_sets", "parse_shard", "process_shoot", "read_latest_summary", "shard_sets", "summary_doc",
           "validate_tiling", "write_summary"]

log = get_logger("process")


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


def _prepare_output(runner: Runner, root: Path, dry_run: bool) -> LogFile | None:
    """Move an old layout in, clean temp files of killed runs, open the log (None in a dry run)."""
    if dry_run:
        return None
    layout = runner.layout
    try:
        runner.out.mkdir(parents=True, exist_ok=True)
        migrate_legacy_layout(layout)
        logfile = LogFile(layout.log)
    except OSError as exc:
        raise InputError(f"cannot write to the output folder ({describe_os_error(exc, with_path=False)})",
                         runner.out, "check free space and permissions, or pass --out") from None
    # temp files of killed runs: finals, sidecars, summaries, locks, manifest, cache
    for folder, deep in ((runner.out, False), (layout.meta, True), (root / ".flambient", True)):
        clean_partials(folder, recursive=deep)
    return logfile


def _plan_sets(root: Path, opts: ProcessOptions, out: Path,
               on_ingest: Callable[[str, int, int], None] | None) -> tuple[Any, list[BracketSet], list[dict[str, Any]]]:
    """The manifest, this shard's sets and this shard's share of the unreadable files."""
    manifest = load_manifest_for_run(root, opts.recursive, out, on_ingest)
    sets = shard_sets(manifest.sets, opts.shard)
    errors = manifest.errors
    if opts.shard is not None:
        errors = [e for k, e in enumerate(sorted(errors, key=lambda e: str(e.get("path"))))
                  if k % opts.shard[1] == opts.shard[0] - 1]
    return manifest, sets, errors


def process_shoot(shoot: str | Path, opts: ProcessOptions,
                  progress: Callable[[SetResult], None] | None = None,
                  on_plan: Callable[[int], None] | None = None,
                  on_tile: Callable[[str, int, int], None] | None = None,
                  stages: StagesFactory | None = None,
                  on_ingest: Callable[[str, int, int], None] | None = None) -> BatchSummary:
    """Process every set of ``shoot`` (this shard's) with ``opts``; returns the summary.

    Writes finals into the output folder and sidecars, the run's summary and the log under
    ``OUT/.flambient/`` (not in a dry run). ``progress`` is called once per finished item;
    ``on_plan`` with the number of items before work starts; ``on_tile(set, done, total)`` per
    tile; ``on_ingest(stage, done, total)`` while the shoot is (re-)ingested; ``stages`` builds the decode / compute / encode stages from the run's context (default
    :class:`~flambient.batch.stages.Stages`; a subclass injects behaviour). SIGINT/SIGTERM in the
    main thread stop the run cleanly: the summary's ``signal`` is set and its exit code is 130 /
    143. Raises :class:`InputError` / :class:`ConfigError` / :class:`~flambient.errors.ModelError`
    for problems that stop the whole run (missing folder, bad model); per-set problems end up in
    the summary.
    """
    root = Path(shoot).resolve()
    if not root.is_dir():
        raise InputError("shoot folder not found" if not root.exists() else "not a folder", root)
    flag = StopFlag()
    runner = Runner(root, opts, progress, on_tile, stages=stages, stop=flag.event)
    logfile = _prepare_output(runner, root, opts.dry_run)
    try:
        with stop_on_signals(flag):
            summary = _run(runner, root, opts, flag, on_plan, on_ingest)
        if not opts.dry_run:
            try:
                write_summary(summary)
            except OSError as exc:  # disk full, read-only: the run's results still reach the caller
                summary.problems.append(f"cannot write the run summary ({describe_os_error(exc)})")
                log.error("%s", summary.problems[-1])
        return summary
    finally:
        if logfile is not None:
            logfile.close()


def _run(runner: Runner, root: Path, opts: ProcessOptions, flag: StopFlag,
         on_plan: Callable[[int], None] | None,
         on_ingest: Callable[[str, int, int], None] | None = None) -> BatchSummary:
    """Ingest (interruptible at once), plan and run; a signal ends up in ``summary.signal``."""
    try:
        flag.raise_now = True
        manifest, sets, errors = _plan_sets(root, opts, runner.out, on_ingest)
        flag.raise_now = False
    except RunInterrupted as exc:
        log.warning("interrupted while reading the shoot; no set was started")
        return BatchSummary(root, runner.out, [], runner.model_name, runner.preset.name, 0.0, signal=exc.signum)
    if on_plan is not None:
        on_plan(len(sets) + len(errors))
    summary = runner.run(sets, errors)
    summary.inputs = _account(manifest, summary, {b.name for b in sets}, errors)
    summary.signal = flag.signum
    if flag.signum is not None:
        log.warning("stopped by %s: %s", signal.Signals(flag.signum).name,
                    ", ".join(f"{n} {s}" for s, n in sorted(summary.counts().items())))
    return summary

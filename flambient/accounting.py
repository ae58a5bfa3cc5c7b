"""Where every input file of a ``process`` run went: its set and final, or why it has none.

A folder of 35 images that comes back with 34 finals must say which two files share a final
(and whether the grouping was sure of it) and which file failed and why. :func:`account_inputs`
builds one entry per image file the shoot scan found, for the run summary (``OUT/.flambient/summaries/``) and
the terminal summary.
"""

from __future__ import annotations

from typing import Any

from .brackets import BracketSet


def account_inputs(files: list[str], sets: list[BracketSet], errors: list[dict[str, Any]],
                   grouping: list[dict[str, Any]], results: list[Any], rel: Any,
                   processed: set[str] | None = None) -> list[dict[str, Any]]:
    """One dict per input file, in ``files`` order.

    ``files``: every scanned file (paths relative to the shoot); ``sets``/``errors``/``grouping``:
    the manifest's; ``results``: the run's :class:`~flambient.process.SetResult` items;
    ``rel``: maps a frame's absolute path to its relative one; ``processed``: names of the sets
    this run (shard) handled (None: all). Each entry: ``path``, ``status`` (the set's status,
    ``failed`` for a file ingest could not use, ``other shard`` for a set another shard owns),
    and where known ``set``, ``role``, ``frames_in_set``, ``final``, ``grouping`` (why the file
    joined or started its set; ``sure`` False for a join on weak evidence) and ``reason``.
    """
    by_result = {r.name: r for r in results}
    why = {g.get("path"): g for g in grouping}
    where: dict[str, tuple[BracketSet, Any]] = {}
    for s in sets:
        for f in s.frames:
            where[rel(f.path)] = (s, f)
    failed = {str(e.get("path")): str(e.get("error")) for e in errors}
    out: list[dict[str, Any]] = []
    for path in files:
        entry: dict[str, Any] = {"path": path}
        if path in where:
            s, f = where[path]
            res = by_result.get(s.name)
            entry.update({"set": s.name, "role": f.role, "frames_in_set": len(s.frames)})
            if processed is not None and s.name not in processed:
                entry["status"] = "other shard"
            elif res is None:
                entry["status"] = "not processed"
            else:
                entry["status"] = res.status
                if res.final:
                    entry["final"] = res.final
                if res.error:
                    entry["reason"] = res.error
            g = why.get(path)
            if g is not None:
                entry["grouping"] = {k: v for k, v in g.items() if k not in ("path", "set")}
        elif path in failed:
            entry.update({"status": "failed", "reason": failed[path]})
        else:
            entry.update({"status": "failed", "reason": "not in any set (ingest again)"})
        out.append(entry)
    return out


def unsure_sets(inputs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Sets holding a file that joined on weak evidence: ``{set: [its files]}``."""
    weak = {e["set"] for e in inputs if e.get("grouping") and not e["grouping"].get("sure", True)}
    out: dict[str, list[str]] = {}
    for e in inputs:
        if e.get("set") in weak:
            out.setdefault(e["set"], []).append(e["path"])
    return out

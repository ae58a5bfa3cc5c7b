"""What decides a final: the hashes of a set's inputs and the run's fingerprint of them.

A set is skipped when its sidecar's fingerprint equals the one a final made now would have
(:func:`fingerprint`): same input files (by sha256), same model (its backend's fingerprint),
same preset settings and tiling, same :data:`PIPELINE_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..brackets import BracketSet
from ..output import sha256_file

#: Bumped when the output of an unchanged set would differ (invalidates every fingerprint).
PIPELINE_VERSION = 1


def input_hashes(bset: BracketSet, shoot: Path, previous: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``[{path, role, size, mtime, sha256}]`` of the set's files (paths relative to ``shoot``);
    hashes of ``previous`` (a sidecar's ``inputs``) are reused when size and mtime match.
    Raises OSError for a vanished file or a broken link (the caller fails the set)."""
    old = {d.get("path"): d for d in (previous or []) if isinstance(d, dict)}
    out: list[dict[str, Any]] = []
    for f in bset.frames:
        st = f.path.stat()
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

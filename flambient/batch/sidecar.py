"""The sidecar of a final (:class:`Sidecar`), its reader and writer, and who owns a final's name.

A sidecar lives in ``OUT/.flambient/sidecars/<final>.json`` (:mod:`flambient.batch.layout`);
an output folder of an older version has it beside the final as ``<final>.json``, which is
still read (and moved in by :func:`~flambient.batch.layout.migrate_legacy_layout`).

Ownership: the sidecar records ``final_sha256``, the hash of the final as written, so a later
run can tell flambient's untouched final from a user's file or edit (:func:`final_ownership`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_text
from .layout import layout_of_final


@dataclass
class Sidecar:
    """What ``process`` records about one final (JSON keys are the field names).

    ``size`` is ``[width, height]`` in pixels; ``inputs`` is ``[{path, role, size, mtime,
    sha256}]`` (paths relative to the shoot); ``timings`` in seconds; ``final_stat`` is
    ``{size, mtime_ns}`` of the final as written (lets a later run skip re-hashing it);
    ``replaces_sha256`` the hash of the final this one replaced (a run killed between the two
    renames still recognises its own final).
    """

    flambient_version: str
    fingerprint: str
    set: str = ""
    final: str = ""
    size: list[int] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    preset: dict[str, Any] = field(default_factory=dict)
    tiling: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    reference: str = ""
    device: str | None = None
    host: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    created: str = ""
    final_sha256: str | None = None
    final_stat: dict[str, int] | None = None
    replaces_sha256: str | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Sidecar:
        """A sidecar from its parsed JSON (unknown keys ignored, missing ones default; the
        version and fingerprint are required: see :func:`is_flambient_sidecar`)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def to_doc(self) -> dict[str, Any]:
        """The JSON document (keys in field order)."""
        return asdict(self)


def sidecar_path(final: str | Path) -> Path:
    """``OUT/.flambient/sidecars/<final>.json`` (``room.jpg`` -> ``room.jpg.json``)."""
    p = Path(final)
    return layout_of_final(p).sidecars / (p.name + ".json")


def legacy_sidecar_path(final: str | Path) -> Path:
    """Where older versions kept the sidecar: ``<final>.json`` beside the final."""
    p = Path(final)
    return p.with_name(p.name + ".json")


def is_flambient_sidecar(doc: Any) -> bool:
    """Whether a parsed JSON document is a sidecar flambient wrote (version and fingerprint)."""
    return isinstance(doc, dict) and "flambient_version" in doc and "fingerprint" in doc


def _read_json(path: Path) -> tuple[bool, Any]:
    """``(exists, parsed document or None when unreadable)``."""
    if not os.path.lexists(path):
        return False, None
    try:
        return True, json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True, None


def read_sidecar(final: str | Path) -> Sidecar | None:
    """The sidecar of a final (new place first, then beside the final), or None when absent,
    unreadable or not flambient's."""
    for p in (sidecar_path(final), legacy_sidecar_path(final)):
        _exists, doc = _read_json(p)
        if is_flambient_sidecar(doc):
            return Sidecar.from_doc(doc)
    return None


def write_sidecar(final: str | Path, side: Sidecar) -> Path:
    """Write the final's sidecar atomically (pretty JSON) in ``OUT/.flambient/sidecars/``."""
    return atomic_write_text(sidecar_path(final),
                             json.dumps(side.to_doc(), indent=2, sort_keys=False, default=str) + "\n")


def _claimed_sidecar(final: Path) -> tuple[bool, Sidecar | None]:
    """``(claimed by the user, sidecar)``: a sidecar place holding a link, or a JSON that is not
    flambient's (in the new place, or beside the final where older versions wrote it), claims the
    final's name for the user."""
    for p in (sidecar_path(final), legacy_sidecar_path(final)):
        exists, doc = _read_json(p)
        if not exists:
            continue
        if not is_flambient_sidecar(doc):
            return True, None  # a .json flambient cannot read, or not its own
        if p.is_symlink():
            return True, Sidecar.from_doc(doc)
        return False, Sidecar.from_doc(doc)
    return False, None


def final_ownership(final: str | Path) -> tuple[str, Sidecar | None, str | None]:
    """Who owns the file under a final's name: ``(owner, sidecar, sha256 of the final)``.

    ``owner`` is ``"absent"`` (no final; the sidecar, if any, is flambient's), ``"ours"`` (a
    final whose sha256 is the one the sidecar recorded for it, or for the final it replaced)
    or ``"user"``: a final without a flambient sidecar, a final edited since (hash differs),
    a final from a flambient too old to record hashes, a link or folder under that name, or a
    sidecar place holding a JSON that is not a flambient sidecar. The final is hashed unless its
    size and mtime (ns) are those the sidecar recorded (``final_stat``), like input hashes are
    reused. Raises OSError when the final cannot be read.
    """
    from ..output import sha256_file

    p = Path(final)
    claimed, side = _claimed_sidecar(p)
    if claimed:
        return "user", side, None
    if not os.path.lexists(p):
        return "absent", side, None
    if p.is_symlink() or not p.is_file():
        return "user", side, None
    st = p.stat()
    known = side.final_stat if side is not None else None
    if (side is not None and side.final_sha256 and isinstance(known, dict)
            and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns):
        return "ours", side, str(side.final_sha256)  # same size and mtime as written: not re-read
    sha = sha256_file(p)
    if side is not None and sha in {side.final_sha256, side.replaces_sha256} - {None}:
        return "ours", side, sha
    return "user", side, sha

"""Who made the predictions ``eval`` scores: model, preset and flambient version.

Finals written by ``flambient process`` carry a sidecar (:func:`flambient.batch.sidecar.read_sidecar`)
recording the model (name, family), the preset and the flambient version. ``eval`` reads the
sidecar of every prediction it scores and reduces them to one :class:`Provenance` for the
report header and ``metrics.json``. Predictions made elsewhere have no sidecar; the user can
then name the model and preset (``eval --model NAME --preset NAME``). A value given as an
option wins over the sidecars (a warning is logged when they disagree).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .log import get_logger
from .batch.sidecar import read_sidecar

log = get_logger("eval")


@dataclass(frozen=True)
class Provenance:
    """Model, preset and version behind a folder of predictions (None: not known).

    ``source`` says where the values came from: ``"sidecars"``, ``"options"``,
    ``"sidecars and options"`` or ``"unknown"``; ``with_sidecar`` of ``finals`` predictions
    had a flambient sidecar. Several different values across the finals are written
    ``"mixed: a, b"``.
    """

    model: str | None
    preset: str | None
    finals_version: str | None
    source: str
    with_sidecar: int
    finals: int

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` header fields (see the README's eval section)."""
        return {"model": self.model, "preset": self.preset, "finals_flambient_version": self.finals_version,
                "provenance": self.source, "finals_with_sidecar": self.with_sidecar}


def _model_label(doc: dict[str, Any]) -> str | None:
    """``name (family)`` of a sidecar's model; a path is shortened to its last part."""
    model = doc.get("model")
    if not isinstance(model, dict) or not model.get("name"):
        return None
    name = str(model["name"])
    short = Path(name).name if ("/" in name or "\\" in name) else name
    family = model.get("family")
    return f"{short} ({family})" if family and family != short else short


def _preset_label(doc: dict[str, Any]) -> str | None:
    preset = doc.get("preset")
    if isinstance(preset, dict):
        return str(preset["name"]) if preset.get("name") else None
    return str(preset) if preset else None


def _one(values: list[str]) -> str | None:
    """The single distinct value, ``mixed: a, b`` for several, None for none."""
    distinct = sorted(set(values))
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else "mixed: " + ", ".join(distinct)


def _pick(name: str, option: str | None, found: str | None) -> str | None:
    if option is None:
        return found
    if found is not None and found != option:
        log.warning("--%s %s, but the finals' sidecars say %s; the report shows %s", name, option, found, option)
    return option


def read_provenance(predictions: Iterable[str | Path], model: str | None = None,
                    preset: str | None = None) -> Provenance:
    """Reduce the sidecars of ``predictions`` (image paths) and the options to one record."""
    models: list[str] = []
    presets: list[str] = []
    versions: list[str] = []
    total = with_sidecar = 0
    for path in predictions:
        total += 1
        side = read_sidecar(path)  # None unless flambient wrote it
        if side is None:
            continue
        doc = side.to_doc()
        with_sidecar += 1
        models += [v for v in [_model_label(doc)] if v]
        presets += [v for v in [_preset_label(doc)] if v]
        versions.append(str(doc["flambient_version"]))
    sources = (["sidecars"] if with_sidecar else []) + (["options"] if model or preset else [])
    return Provenance(model=_pick("model", model, _one(models)), preset=_pick("preset", preset, _one(presets)),
                      finals_version=_one(versions), source=" and ".join(sources) or "unknown",
                      with_sidecar=with_sidecar, finals=total)

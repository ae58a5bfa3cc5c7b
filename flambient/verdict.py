"""One plain-language sentence summing up an ``eval``: the report's headline.

The sentence compares the finals with the editor's finals per image on CIEDE2000 (mean dE per
image, the metric a person sees as colour difference). With baselines it counts the images on
which the finals are closer to the editor's than a classical blend (the luminosity blend, the
manual flambient recipe); on single-frame inputs every blend is the input itself, and the
sentence says "the unedited input" instead. Without baselines it gives the mean dE with a
rough reading of its size. The worst image is always named, and images that could not be
scored are counted, so the sentence never sounds better than the numbers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .evaluate import EvalResult

#: Baselines the verdict compares against, in order of preference, with their plain names.
REFERENCES = {"luminosity": "the luminosity blend", "mertens": "Mertens exposure fusion",
              "ambient": "the ambient frame alone"}

#: Rough reading of a mean CIEDE2000 (upper bound, words): a rule of thumb, not a standard.
DE_WORDS = ((1.0, "not visible"), (2.0, "visible only side by side"), (5.0, "small but visible"),
            (10.0, "clearly visible"), (math.inf, "large"))


def de_words(de: float) -> str:
    """A rough plain reading of a mean CIEDE2000 value (see :data:`DE_WORDS`)."""
    return next(words for bound, words in DE_WORDS if de < bound)


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _reference(result: EvalResult) -> tuple[str, str] | None:
    """``(baseline key, plain name)`` to compare with, or None without baselines."""
    key = next((k for k in REFERENCES if k in result.baselines), None)
    if key is None:
        return None
    single = all(r.baseline_metrics.get(key, {}).get("delta_e2000")
                 == r.baseline_metrics.get("ambient", {}).get("delta_e2000") for r in result.images)
    return key, ("the unedited input" if single and "ambient" in result.baselines else REFERENCES[key])


def _count_phrase(closer: int, compared: int) -> str:
    if closer == compared:
        return f"on all {compared} images" if compared > 1 else "on the one image"
    if closer == 0:
        return f"on any of the {compared} images" if compared > 1 else "on the one image"
    return f"on {closer} of {compared} images"


def _against(result: EvalResult, key: str, label: str) -> str | None:
    """The comparison with one baseline, or None when no image has both scores."""
    pairs = [(r.metrics.get("delta_e2000"), r.baseline_metrics.get(key, {}).get("delta_e2000"))
             for r in result.images]
    pairs = [(m, b) for m, b in pairs if _finite(m) and _finite(b)]
    if not pairs:
        return None
    closer = sum(1 for m, b in pairs if m < b)
    side = "not closer to" if closer == 0 else "closer to"
    mean_m = sum(m for m, _ in pairs) / len(pairs)
    mean_b = sum(b for _, b in pairs) / len(pairs)
    return (f"The finals are {side} your editor's than {label} {_count_phrase(closer, len(pairs))} "
            f"(mean colour difference dE {mean_m:.1f} against {mean_b:.1f})")


def verdict(result: EvalResult) -> str:
    """The headline sentence of an eval (ends with a full stop)."""
    scored = [(r.name, r.metrics.get("delta_e2000")) for r in result.images]
    scored = [(n, v) for n, v in scored if _finite(v)]
    unscored = len(result.failed) + len(result.images) - len(scored)
    if not scored:
        return f"No image could be scored ({unscored} failed); see the list below."
    ref = _reference(result)
    head = _against(result, *ref) if ref is not None else None
    if head is None:
        mean = sum(v for _, v in scored) / len(scored)
        head = (f"The finals differ from your editor's by a mean colour difference of dE {mean:.1f} "
                f"({de_words(mean)}) over {len(scored)} image{'s' if len(scored) != 1 else ''}")
    name, worst = max(scored, key=lambda nv: nv[1])
    tail = f"; worst: {name} (dE {worst:.1f})"
    if unscored:
        tail += f"; {unscored} image{'s' if unscored != 1 else ''} could not be scored"
    if result.missing:
        tail += f"; {len(result.missing)} without a partner"
    return head + tail + "."

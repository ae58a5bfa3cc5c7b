"""Model families: the spec each declares, the common interface, the registry, model files.

Every family is one module in :mod:`flambient.nets` holding a :class:`FlambientNet` subclass
whose class attribute ``spec`` (a :class:`ModelSpec`) is its only declaration, added to the
registry by the class decorator :func:`register`. The runner (`process`), the trainer and the
exporter read only the spec and the hooks, never the family's name.

Interface ("context once, apply everywhere"):

- ``context(low)``: ``low`` is the whole input stack area-resized to
  ``spec.context_size`` x ``spec.context_size`` (N x 13 x s x s, linear). Returns a compact,
  resolution-free tensor (a bilateral grid, LUT weights, pooled features ...).
- ``apply(x, ctx, pos)``: ``x`` is a full-resolution tile of the stack (N x 13 x h x w,
  linear), ``ctx`` the context of the WHOLE image, ``pos`` a float tensor of shape (4,):
  ``[y0, x0, H, W]``, the tile's top-left corner and the full image size in pixels. Returns
  the final for that tile as sRGB signal values in [0, 1], N x 3 x h x w.
- ``forward(x)``: whole image in one go: ``apply(x, context(downsample(x)), [0, 0, H, W])``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelError, first_line
from ..paths import search_dirs
from ..schema import signature_fields, validate
from ..stack import STACK_CHANNELS, WINDOW

#: Magic value stored in every model file, checked on load.
MODEL_FORMAT = "flambient-model"
MODEL_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    """What the runner, trainer and exporter must know about a family.

    Attributes:
        family: registry name.
        description: one line for ``flambient models``.
        in_channels: channels of the input stack (always the fixed stack, 13).
        size_multiple: tile height and width must be multiples of this (pixels).
        tileable: whether ``apply`` may run tile by tile.
        overlap: pixels of overlap between neighbouring tiles the family needs (0 for
            per-pixel families); blended with a smooth ramp.
        context_size: side of the square low-resolution copy the context net sees (pixels).
        half_precision: whether fp16 inference is safe on GPU.
        tile_exact: whether ``apply`` is per pixel given ``pos``, so tiles equal the whole image
            up to float rounding (then ``overlap`` is 0).
        tile_tolerance: the largest |tiled - whole| (sRGB signal, 0-1) the family promises with
            its declared ``overlap``; tested for every family (``tests/test_families.py``).
        exportable: whether :mod:`flambient.export` can write ONNX for it.
        export_note: why not, when ``exportable`` is False, or what to know.
        style_lr: Adam learning rate of a few-shot fine-tune of ``style_parameters()`` (a
            handful of O(1) numbers take a large one; a CNN context, the default style, a small one).
    """

    family: str
    description: str
    in_channels: int = STACK_CHANNELS
    size_multiple: int = 1
    tileable: bool = True
    overlap: int = 0
    context_size: int = 256
    half_precision: bool = True
    tile_exact: bool = True
    tile_tolerance: float = 1.0 / 255.0
    exportable: bool = True
    export_note: str = ""
    style_lr: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML- and weights_only-safe)."""
        return dataclasses.asdict(self)


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-resize an N x C x H x W stack to N x C x size x size (the context input)."""
    return F.adaptive_avg_pool2d(x, (size, size))


#: Linear value where the networks' input encoding saturates (the sRGB curve runs on [0, 16]).
ENCODE_MAX = 16.0
#: Stack channels 0-8 (ambient, flash, window RGB) are encoded; the rest (mask, flags) pass through.
RGB_CHANNELS = WINDOW.stop


def encode_rgb(x: torch.Tensor) -> torch.Tensor:
    """Compress linear light for a network: sRGB curve on [0, ENCODE_MAX], so highlights stay visible.

    Shape-preserving; applies to any tensor of linear values (use on RGB channels only).
    :func:`flambient.colour.srgb_encode_into` is the same curve for numpy hot loops.
    """
    x = x.clamp(0.0, ENCODE_MAX)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-8) ** (1.0 / 2.4) - 0.055)


def encode_stack(x: torch.Tensor) -> torch.Tensor:
    """Encode the RGB channels (0-8) of an N x 13 x H x W stack with :func:`encode_rgb`."""
    return torch.cat([encode_rgb(x[:, :RGB_CHANNELS]), x[:, RGB_CHANNELS:]], dim=1)


def full_pos(x: torch.Tensor) -> torch.Tensor:
    """The ``pos`` tensor of a whole image: ``[0, 0, H, W]`` (float32, shape (4,))."""
    return torch.tensor([0.0, 0.0, float(x.shape[-2]), float(x.shape[-1])], device=x.device)


class FlambientNet(nn.Module):
    """Base class of every family: the one declaration (``spec``) and every hook, with defaults.

    A family subclasses this, sets the class attribute ``spec`` (its :class:`ModelSpec`, the
    only place it is declared), implements :meth:`context` and :meth:`apply`, and is added to
    the registry with the class decorator :func:`register`. The hooks below have ONE signature
    each; the trainer, the fine-tuner and the exporter call them directly (never ``getattr``):

    - ``training_loss(x, y, *, ctx, pos)``: the family's own loss, or None (default) for the
      trainer's regression loss on ``apply``;
    - ``regulariser(ctx)``: a penalty added to the loss, or None (default);
    - ``context_parameters()`` / ``style_parameters()``: what ``--context-only`` and a few-shot
      fine-tune train;
    - ``context_features(low)`` / ``context_from(low, features)``: the style-independent part
      of the context, computed once by a few-shot fit (None / plain ``context`` by default).
    """

    spec: ClassVar[ModelSpec]

    def __init__(self, **config: Any) -> None:
        super().__init__()
        #: Constructor arguments, stored in model files to rebuild the net.
        self.config: dict[str, Any] = check_family_config(type(self), config)

    def context(self, low: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Whole-image context from the N x 13 x s x s low-resolution stack."""
        raise NotImplementedError

    def apply(self, x: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Final sRGB (N x 3 x h x w) of the tile ``x`` given the whole-image ``ctx``."""
        raise NotImplementedError

    def context_of(self, x: torch.Tensor) -> torch.Tensor:
        """Context of a full-resolution N x 13 x H x W stack."""
        return self.context(downsample(x, self.spec.context_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-image inference: N x 13 x H x W linear stack -> N x 3 x H x W sRGB."""
        return self.apply(x, self.context_of(x), full_pos(x))

    # ------------------------------------------------------------------ training hooks
    def training_loss(self, x: torch.Tensor, y: torch.Tensor, *, ctx: torch.Tensor | None = None,
                      pos: torch.Tensor | None = None) -> torch.Tensor | None:
        """The family's own training loss (scalar), or None for the trainer's regression loss.

        ``x``: N x 13 x h x w linear stack (a crop of the image or all of it); ``y``: N x 3 x h x w
        sRGB target in [0, 1]; ``ctx``: the context of the WHOLE image (as at inference; None:
        the context of ``x``); ``pos``: ``[y0, x0, H, W]`` of the crop (None: ``x`` is the whole
        image). The default returns None: the trainer then applies its L1 + SSIM + CIELAB loss
        to ``apply(x, ctx, pos)``.
        """
        return None

    def regulariser(self, ctx: torch.Tensor | None = None) -> torch.Tensor | None:
        """A penalty (scalar) the trainer adds to the loss; None (the default): nothing to add.

        ``ctx`` is the batch's context when the penalty is on per-image quantities; the trainer
        passes None, which means a penalty on the weights themselves.
        """
        return None

    def context_parameters(self) -> list[nn.Parameter]:
        """Parameters of the context branch (what ``finetune --context-only`` trains).

        The default is every parameter; families with a separate context head override it.
        """
        return list(self.parameters())

    def style_parameters(self) -> list[nn.Parameter]:
        """The few global parameters a handful of pairs can determine (few-shot ``finetune``).

        The default is the context branch; families with an explicit global style (``adaptive``)
        override it with just those numbers.
        """
        return self.context_parameters()

    def widen_bounds(self, pairs: list[tuple[Any, Any]]) -> dict[str, float]:
        """Let a family widen its built-in safety bounds to what a studio's own edits do.

        ``finetune`` calls it before fitting with ``(stack, target)`` pairs (HxWx13 linear numpy
        stack, HxWx3 sRGB target in [0, 1]). A family updates its attributes *and*
        ``self.config`` (so the saved model keeps them) and returns what it changed
        (name -> new value). The default: nothing to widen.
        """
        return {}

    def context_features(self, low: torch.Tensor) -> torch.Tensor | None:
        """What :meth:`context` computes from ``low`` that no style parameter changes (None: nothing).

        Few-shot fine-tuning computes it once per image and then calls :meth:`context_from`.
        """
        return None

    def context_from(self, low: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """:meth:`context` given :meth:`context_features` of the same ``low`` (computed once)."""
        return self.context(low)


def check_family_config(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """Validate a family's constructor arguments against the signature of ``cls.__init__``.

    Every family gets this through :class:`FlambientNet`: a key the constructor does not
    name (a typo such as ``gird_size`` swallowed by ``**extra``) or a value of the wrong type
    (by the parameter's default) raises :class:`ConfigError` naming ``model_config.<key>``.
    A constructor that names no parameters (only ``**config``) is not checked.
    """
    schema = signature_fields(cls.__init__)  # type: ignore[misc]
    if schema is None:
        return dict(config)
    return validate(config, schema, section="model_config")


_REGISTRY: dict[str, type[FlambientNet]] = {}

FamilyT = TypeVar("FamilyT", bound=type[FlambientNet])


def register(cls: FamilyT) -> FamilyT:
    """Class decorator: add a :class:`FlambientNet` subclass under ``cls.spec.family``.

    The spec is read from the class (its only declaration). Raises TypeError for a class that
    is not a FlambientNet or declares no :class:`ModelSpec`, and ValueError when another class
    already holds the name (a programming error, not a user's).
    """
    spec = cls.__dict__.get("spec")
    if not (isinstance(cls, type) and issubclass(cls, FlambientNet)) or not isinstance(spec, ModelSpec):
        raise TypeError(f"{cls!r} must subclass FlambientNet and set a ModelSpec as its `spec`")
    held = _REGISTRY.get(spec.family)
    if held is not None and held.__qualname__ != cls.__qualname__:
        raise ValueError(f"model family '{spec.family}' is registered twice ({held.__qualname__}, {cls.__qualname__})")
    _REGISTRY[spec.family] = cls
    return cls


def _load_families() -> None:
    """Import every family module so that its ``register`` call runs."""
    import importlib
    import pkgutil

    from .. import nets

    for info in pkgutil.iter_modules(nets.__path__):
        if info.name not in ("registry",) and not info.name.startswith("_"):
            importlib.import_module(f"{nets.__name__}.{info.name}")


def families() -> dict[str, ModelSpec]:
    """All registered families by name, with their specs."""
    _load_families()
    return {name: cls.spec for name, cls in sorted(_REGISTRY.items())}


def create_model(family: str, **config: Any) -> FlambientNet:
    """Build a fresh (untrained) net of ``family`` with constructor ``config``."""
    _load_families()
    if family not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ModelError(f"unknown model family '{family}'", hint=f"known families: {known}")
    try:
        return _REGISTRY[family](**config)
    except (TypeError, ValueError) as exc:  # a constructor refusing its arguments
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(f"model_config does not fit family '{family}' ({first})") from None


# ----------------------------------------------------------------------------- model files


def model_search_paths() -> list[Path]:
    """Folders searched for ``models/<name>/``: $FLAMBIENT_MODELS, the user folder, the shipped models.

    See :mod:`flambient.paths`; the current folder is not searched.
    """
    return search_dirs("FLAMBIENT_MODELS", "models")


def available_models() -> dict[str, Path]:
    """Model names usable as ``--model NAME`` -> their folder (first search folder wins), sorted."""
    found: dict[str, Path] = {}
    for base in model_search_paths():
        if base.is_dir():
            for d in sorted(base.iterdir()):
                if (d / "model.pt").is_file():
                    found.setdefault(d.name, d)
    return dict(sorted(found.items()))


def resolve_model_path(name_or_path: str | Path) -> Path:
    """Find a model's ``model.pt`` (or ``.onnx``) from a shipped name, a folder or a file path.

    Raises :class:`ModelError` listing the shipped models when nothing matches.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        for cand in ("model.pt", "model.onnx"):
            if (p / cand).is_file():
                return p / cand
        raise ModelError("folder holds no model.pt or model.onnx", p)
    if os.sep not in str(name_or_path) and "/" not in str(name_or_path):
        for base in model_search_paths():
            cand = base / str(name_or_path) / "model.pt"
            if cand.is_file():
                return cand
    shipped = list(available_models())
    raise ModelError(f"unknown model '{name_or_path}'",
                     hint=f"shipped models: {', '.join(shipped) or 'none'}; or give a model folder or file path")


def save_model(net: FlambientNet, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/model.pt`` (weights, family, spec, config, version), atomically.

    ``extra`` (plain data: str/int/float/list/dict) is stored under ``"meta"``.
    """
    from .. import __version__
    from ..io.atomic import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "flambient_version": __version__,
        "family": net.spec.family,
        "spec": net.spec.to_dict(),
        "config": dict(net.config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "meta": dict(extra or {}),
    }
    dest = out / "model.pt"
    with atomic_path(dest) as tmp:
        torch.save(payload, tmp)
    return dest


def load_model(name_or_path: str | Path, map_location: str | torch.device = "cpu") -> tuple[FlambientNet, dict[str, Any]]:
    """Load a flambient model safely (``weights_only=True``: no code from the file runs).

    Returns ``(net in eval mode, meta dict)``; ``meta["predates"]`` lists the parameters the
    file has no values for (a family's load hook filled them). Raises :class:`ModelError` when the file is
    not a flambient model, is corrupt, or names an unknown family.
    """
    path = resolve_model_path(name_or_path)
    if path.suffix == ".onnx":
        raise ModelError("this is an ONNX model; use it with the onnx backend", path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError("holds Python objects that safe loading refuses; nothing in it was run", path,
                         "use a model written by flambient (train, finetune)") from None
    except Exception as exc:
        first = first_line(exc, 160)
        raise ModelError(f"not a loadable flambient model ({first})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelError("not a flambient model file (format marker missing)", path)
    if int(payload.get("format_version", 0)) > MODEL_FORMAT_VERSION:
        raise ModelError("model file is from a newer flambient", path, "upgrade flambient")
    try:
        net = create_model(str(payload["family"]), **dict(payload.get("config", {})))
    except ConfigError as exc:
        raise ModelError(f"model file's settings do not fit its family ({exc})", path) from None
    try:
        net.load_state_dict(payload["state_dict"])
    except Exception as exc:
        raise ModelError(f"weights do not fit family '{payload['family']}' ({str(exc)[:120]})", path) from None
    net.eval()
    meta = dict(payload.get("meta", {}))
    meta.setdefault("path", str(path))
    # Parameters the file predates (filled by the family's load hook, e.g. switched-off parts).
    meta["predates"] = sorted(set(net.state_dict()) - set(payload["state_dict"]))
    return net, meta

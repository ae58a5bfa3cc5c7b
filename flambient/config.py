"""Presets: YAML files -> typed, validated dataclasses (what ``--preset NAME`` loads).

A preset file (``presets/<name>.yaml`` or any path) has four optional sections; every key is
optional and defaults to the values below. Unknown keys and bad values raise
:class:`~flambient.errors.ConfigError` naming the file, the key and what is allowed::

    description: "One line for `flambient presets`"
    model: default            # shipped model name, model folder, model.pt or .onnx
                              # (relative paths are relative to the preset file)
    edit:
      strength: 1.0           # 0..1: blend of the learned edit over a neutral rendering
      exposure_bias: 0.0      # EV added to the final (-3..3)
      white_balance: null     # kelvin (2000..12000) the final's white is shifted to; null = as edited
    output:
      format: jpeg            # jpeg | tiff16
      quality: 95             # JPEG quality 1..100
      colour_space: srgb      # srgb (ICC profile embedded)
      long_edge: null         # resize so the long edge is at most this many pixels; null = full size
      sharpen: 0.0            # unsharp-mask amount after resizing (0..3; 0 = off)
      sharpen_radius: 1.0     # unsharp-mask Gaussian sigma in pixels (0.3..10)
      naming: "{set}"         # file stem; fields {set}, {preset}, {model}; extension from format
    tiling:
      tile: 1024              # largest tile side in pixels (128..16384); null = whole image
      overlap: null           # overlap between tiles in pixels; null = the model's need
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .paths import search_dirs

PRESET_SUFFIXES = (".yaml", ".yml")
FORMATS = ("jpeg", "tiff16")
COLOUR_SPACES = ("srgb",)
NAMING_FIELDS = ("set", "preset", "model")


@dataclass(frozen=True)
class EditSettings:
    """How the learned edit is applied: strength (0..1), exposure bias (EV), WB target (K or None)."""

    strength: float = 1.0
    exposure_bias: float = 0.0
    white_balance: float | None = None


@dataclass(frozen=True)
class OutputSettings:
    """File format and finishing of the final (see the module docstring for each key)."""

    format: str = "jpeg"
    quality: int = 95
    colour_space: str = "srgb"
    long_edge: int | None = None
    sharpen: float = 0.0
    sharpen_radius: float = 1.0
    naming: str = "{set}"

    @property
    def extension(self) -> str:
        """File extension of the final, with the dot."""
        return ".jpg" if self.format == "jpeg" else ".tif"


@dataclass(frozen=True)
class TilingSettings:
    """Tile side (pixels, None = whole image) and overlap (None = the model's spec)."""

    tile: int | None = 1024
    overlap: int | None = None


@dataclass(frozen=True)
class Preset:
    """A validated preset. ``path`` is the file it came from (None for built-in defaults)."""

    name: str
    description: str = ""
    model: str = "default"
    edit: EditSettings = field(default_factory=EditSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    tiling: TilingSettings = field(default_factory=TilingSettings)
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (recorded in sidecars; ``path`` left out)."""
        return {
            "name": self.name,
            "model": self.model,
            "edit": {f.name: getattr(self.edit, f.name) for f in fields(self.edit)},
            "output": {f.name: getattr(self.output, f.name) for f in fields(self.output)},
            "tiling": {f.name: getattr(self.tiling, f.name) for f in fields(self.tiling)},
        }

    def final_name(self, set_name: str, model: str) -> str:
        """File name of a set's final: the naming template plus the format's extension."""
        stem = self.output.naming.format(set=set_name, preset=self.name, model=Path(model).stem if "/" in model or
                                         os.sep in model else model)
        return stem + self.output.extension


# ----------------------------------------------------------------------------- locating presets


def preset_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``: $FLAMBIENT_PRESETS, the repo's presets/, ./presets."""
    return search_dirs("FLAMBIENT_PRESETS", "presets")


def available_presets() -> dict[str, Path]:
    """Preset names found in :func:`preset_dirs` (first folder wins) -> file."""
    found: dict[str, Path] = {}
    for d in preset_dirs():
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.suffix in PRESET_SUFFIXES and p.is_file():
                    found.setdefault(p.stem, p)
    return dict(sorted(found.items()))


def resolve_preset(name_or_path: str | Path) -> Path:
    """The YAML file of a preset name or path; :class:`ConfigError` listing the presets otherwise."""
    p = Path(name_or_path)
    if p.suffix in PRESET_SUFFIXES or os.sep in str(name_or_path) or "/" in str(name_or_path):
        if not p.is_file():
            raise ConfigError("preset file not found", p, "check the path")
        return p
    known = available_presets()
    if str(name_or_path) in known:
        return known[str(name_or_path)]
    raise ConfigError(f"unknown preset '{name_or_path}'",
                      hint=f"known presets: {', '.join(known) or 'none'}; or give a .yaml path")


def load_preset(name_or_path: str | Path) -> Preset:
    """Load and validate a preset by name (``studio``) or path (``./mine.yaml``)."""
    path = resolve_preset(name_or_path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}", path, "fix the syntax") from None
    except OSError as exc:
        raise ConfigError(f"cannot read preset ({exc.strerror})", path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})", path,
                          "save the preset as UTF-8") from None
    return parse_preset(doc if doc is not None else {}, name=path.stem, path=path)


def list_presets() -> list[Preset]:
    """Every available preset, loaded (a broken one raises :class:`ConfigError`)."""
    return [load_preset(p) for p in available_presets().values()]


# ----------------------------------------------------------------------------- validation


def parse_preset(doc: Any, name: str, path: Path | None = None) -> Preset:
    """Validate a parsed YAML document into a :class:`Preset` (raises :class:`ConfigError`)."""
    v = _Validator(path)
    top = v.mapping(doc, "")
    v.known(top, "", ["description", "model", "edit", "output", "tiling"])
    description = v.text(top, "description", "")
    model = v.text(top, "model", "default") or "default"
    if path is not None and ("/" in model or model.endswith((".pt", ".onnx"))) and not Path(model).is_absolute():
        model = str((path.parent / model).resolve())
    e = v.mapping(top.get("edit", {}), "edit")
    v.known(e, "edit", [f.name for f in fields(EditSettings)])
    edit = EditSettings(
        strength=v.number(e, "edit.strength", 1.0, 0.0, 1.0),
        exposure_bias=v.number(e, "edit.exposure_bias", 0.0, -3.0, 3.0),
        white_balance=v.number(e, "edit.white_balance", None, 2000.0, 12000.0, optional=True),
    )
    o = v.mapping(top.get("output", {}), "output")
    v.known(o, "output", [f.name for f in fields(OutputSettings)])
    naming = v.text(o, "output.naming", "{set}")
    v.naming(naming)
    output = OutputSettings(
        format=v.choice(o, "output.format", "jpeg", FORMATS),
        quality=int(v.number(o, "output.quality", 95, 1, 100, integer=True)),
        colour_space=v.choice(o, "output.colour_space", "srgb", COLOUR_SPACES),
        long_edge=v.int_or_none(o, "output.long_edge", None, 64, 65536),
        sharpen=v.number(o, "output.sharpen", 0.0, 0.0, 3.0),
        sharpen_radius=v.number(o, "output.sharpen_radius", 1.0, 0.3, 10.0),
        naming=naming,
    )
    t = v.mapping(top.get("tiling", {}), "tiling")
    v.known(t, "tiling", [f.name for f in fields(TilingSettings)])
    tiling = TilingSettings(tile=v.int_or_none(t, "tiling.tile", 1024, 128, 16384),
                            overlap=v.int_or_none(t, "tiling.overlap", None, 0, 512))
    if tiling.tile is not None and tiling.overlap is not None and tiling.tile <= 2 * tiling.overlap:
        raise ConfigError(f"tiling.tile ({tiling.tile}) must exceed twice tiling.overlap ({tiling.overlap})", path)
    return Preset(name=name, description=description, model=model, edit=edit, output=output, tiling=tiling,
                  path=path)


class _Validator:
    """Typed getters that raise :class:`ConfigError` naming the file, the key and what is allowed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def fail(self, key: str, msg: str, allowed: str) -> ConfigError:
        return ConfigError(f"{key}: {msg}", self.path, f"allowed: {allowed}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key or "preset", f"expected a mapping of keys, got {type(value).__name__}",
                            "key: value lines")
        return value

    def known(self, d: dict[str, Any], section: str, allowed: list[str]) -> None:
        for k in d:
            if k not in allowed:
                full = f"{section}.{k}" if section else str(k)
                raise self.fail(full, "unknown key", ", ".join(allowed))

    @staticmethod
    def _get(d: dict[str, Any], key: str) -> tuple[bool, Any]:
        short = key.rsplit(".", 1)[-1]
        return short in d, d.get(short)

    def text(self, d: dict[str, Any], key: str, default: str) -> str:
        present, val = self._get(d, key)
        if not present or val is None:
            return default
        if not isinstance(val, str):
            raise self.fail(key, f"expected text, got {val!r}", "a string")
        return val

    def number(self, d: dict[str, Any], key: str, default: Any, lo: float, hi: float, *,
               optional: bool = False, integer: bool = False) -> Any:
        present, val = self._get(d, key)
        rng = f"{'an integer' if integer else 'a number'} from {lo:g} to {hi:g}" + (" or null" if optional else "")
        if not present or (val is None and optional):
            return default
        if isinstance(val, bool) or not isinstance(val, (int, float)) or (integer and not float(val).is_integer()):
            raise self.fail(key, f"bad value {val!r}", rng)
        if not lo <= float(val) <= hi:
            raise self.fail(key, f"{val!r} is out of range", rng)
        return int(val) if integer else float(val)

    def int_or_none(self, d: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
        present, val = self._get(d, key)
        if not present:
            return default
        if val is None:
            return None
        return int(self.number(d, key, default, lo, hi, optional=True, integer=True))

    def choice(self, d: dict[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
        present, val = self._get(d, key)
        if not present or val is None:
            return default
        if not isinstance(val, str) or val.lower() not in allowed:
            raise self.fail(key, f"bad value {val!r}", ", ".join(allowed))
        return val.lower()

    def naming(self, template: str) -> None:
        allowed = ", ".join("{" + f + "}" for f in NAMING_FIELDS)
        try:
            parts = [(fld, spec, conv) for _, fld, spec, conv in string.Formatter().parse(template) if fld is not None]
        except ValueError as exc:
            raise self.fail("output.naming", f"bad template ({exc})", f"text with {allowed}") from None
        names = [fld for fld, _, _ in parts]
        for fld, spec, conv in parts:
            if spec or conv:  # {set:.>20} pads with dots (hidden files), {set:x>300} is too long
                extra = (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
                raise self.fail("output.naming", f"format specs and conversions are not allowed ({{{fld}{extra}}})",
                                allowed)
        bad = [n for n in names if n not in NAMING_FIELDS]
        if bad:
            raise self.fail("output.naming", f"unknown field {{{bad[0]}}}", allowed)
        if "set" not in names:
            raise self.fail("output.naming", "must contain {set} (else every set writes the same file)", allowed)
        if "/" in template or "\\" in template or template.startswith("."):
            raise self.fail("output.naming", "must be a plain file name", f"text with {allowed}, no '/' or leading '.'")

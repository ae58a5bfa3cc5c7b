"""Presets: YAML files -> typed, validated dataclasses (what ``--preset NAME`` loads).

A preset file (``presets/<name>.yaml`` or any path) has five optional sections; every key is
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
      format: jpeg            # jpeg | tiff16 | tiff8 (16- or 8-bit TIFF)
      quality: 95             # JPEG quality 1..100
      colour_space: srgb      # srgb (ICC profile embedded)
      long_edge: null         # resize so the long edge is at most this many pixels; null = full size
      sharpen: 0.0            # unsharp-mask amount after resizing (0..3; 0 = off)
      sharpen_radius: 1.0     # unsharp-mask Gaussian sigma in pixels (0.3..10)
      naming: "{set}"         # file stem; fields {set}, {preset}, {model}; extension from format
    metadata:
      strip_gps: false        # drop GPS coordinates (EXIF and XMP) from finals (process --strip-gps)
    tiling:
      tile: 1024              # largest tile side in pixels (128..16384); null = whole image
      overlap: null           # model margin at tile borders (0..512 px); null = the model's need
                              # (one rule with --tile/--overlap: flambient.tiling.tiling_problem)
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
from .schema import Field, validate
from .tiling import MAX_MARGIN, MAX_TILE, MIN_TILE, tiling_problem

PRESET_SUFFIXES = (".yaml", ".yml")
FORMATS = ("jpeg", "tiff16", "tiff8")
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
class MetadataSettings:
    """What finals carry of their source's metadata: ``strip_gps`` drops location coordinates."""

    strip_gps: bool = False


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
    metadata: MetadataSettings = field(default_factory=MetadataSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (recorded in sidecars; ``path`` left out)."""
        return {
            "name": self.name,
            "model": self.model,
            "edit": {f.name: getattr(self.edit, f.name) for f in fields(self.edit)},
            "output": {f.name: getattr(self.output, f.name) for f in fields(self.output)},
            "tiling": {f.name: getattr(self.tiling, f.name) for f in fields(self.tiling)},
            "metadata": {f.name: getattr(self.metadata, f.name) for f in fields(self.metadata)},
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


#: The declarative schema of a preset file (:mod:`flambient.schema`), section by section.
PRESET_SCHEMA: dict[str, Field] = {
    "description": Field(str, "", optional=True),
    "model": Field(str, "default", optional=True),
    "edit": Field(dict, None, optional=True),
    "output": Field(dict, None, optional=True),
    "tiling": Field(dict, None, optional=True),
    "metadata": Field(dict, None, optional=True),
}
EDIT_SCHEMA: dict[str, Field] = {
    "strength": Field(float, 1.0, 0.0, 1.0),
    "exposure_bias": Field(float, 0.0, -3.0, 3.0),
    "white_balance": Field(float, None, 2000.0, 12000.0, optional=True),
}
OUTPUT_SCHEMA: dict[str, Field] = {
    "format": Field(str, "jpeg", choices=FORMATS),
    "quality": Field(int, 95, 1, 100),
    "colour_space": Field(str, "srgb", choices=COLOUR_SPACES),
    "long_edge": Field(int, None, 64, 65536, optional=True),
    "sharpen": Field(float, 0.0, 0.0, 3.0),
    "sharpen_radius": Field(float, 1.0, 0.3, 10.0),
    "naming": Field(str, "{set}", optional=True),
}
METADATA_SCHEMA: dict[str, Field] = {
    "strip_gps": Field(bool, False),
}
TILING_SCHEMA: dict[str, Field] = {
    "tile": Field(int, 1024, MIN_TILE, MAX_TILE, optional=True),
    "overlap": Field(int, None, 0, MAX_MARGIN, optional=True),
}


def parse_preset(doc: Any, name: str, path: Path | None = None) -> Preset:
    """Validate a parsed YAML document into a :class:`Preset` (raises :class:`ConfigError`)."""
    top = validate(doc, PRESET_SCHEMA, path)
    description = top.get("description") or ""
    model = top.get("model") or "default"
    if path is not None and ("/" in model or model.endswith((".pt", ".onnx"))) and not Path(model).is_absolute():
        model = str((path.parent / model).resolve())
    edit = EditSettings(**validate(top.get("edit"), EDIT_SCHEMA, path, "edit", defaults=True))
    o = validate(top.get("output"), OUTPUT_SCHEMA, path, "output", defaults=True)
    o["naming"] = o["naming"] or "{set}"
    _check_naming(o["naming"], path)
    output = OutputSettings(**o)
    t = validate(top.get("tiling"), TILING_SCHEMA, path, "tiling", defaults=True)
    problem = tiling_problem(t["tile"], t["overlap"], names=("tiling.tile", "tiling.overlap"))
    if problem is not None:
        raise ConfigError(problem[0], path, problem[1])
    meta = MetadataSettings(**validate(top.get("metadata"), METADATA_SCHEMA, path, "metadata", defaults=True))
    return Preset(name=name, description=description, model=model, edit=edit, output=output,
                  tiling=TilingSettings(**t), path=path, metadata=meta)


def _check_naming(template: str, path: Path | None) -> None:
    """The ``output.naming`` template: only known fields, must hold {set}, a plain file name."""
    allowed = ", ".join("{" + f + "}" for f in NAMING_FIELDS)

    def fail(msg: str, hint: str) -> ConfigError:
        return ConfigError(f"output.naming: {msg}", path, f"allowed: {hint}")

    try:
        parts = [(fld, spec, conv) for _, fld, spec, conv in string.Formatter().parse(template) if fld is not None]
    except ValueError as exc:
        raise fail(f"bad template ({exc})", f"text with {allowed}") from None
    for fld, spec, conv in parts:
        if spec or conv:  # {set:.>20} pads with dots (hidden files), {set:x>300} is too long
            extra = (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
            raise fail(f"format specs and conversions are not allowed ({{{fld}{extra}}})", allowed)
    names = [fld for fld, _, _ in parts]
    bad = [n for n in names if n not in NAMING_FIELDS]
    if bad:
        raise fail(f"unknown field {{{bad[0]}}}", allowed)
    if "set" not in names:
        raise fail("must contain {set} (else every set writes the same file)", allowed)
    if "/" in template or "\\" in template or template.startswith("."):
        raise fail("must be a plain file name", f"text with {allowed}, no '/' or leading '.'")

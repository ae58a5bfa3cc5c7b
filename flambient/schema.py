"""One declarative validator for every user-written setting (presets, train configs, family args).

A schema is a mapping ``key -> Field``; :func:`validate` checks a parsed YAML mapping (or the
keyword arguments of a family) against it and returns the values, coerced (ints accepted
where floats are expected). Every problem is a one-line
:class:`~flambient.errors.ConfigError` naming the file, the key (``section.key``) and what is
allowed::

    presets/mine.yaml: output.quality: 120 is out of range (allowed: an integer from 1 to 100)
    train.yaml: model_config.gird_size: unknown key (allowed: grid_size, luma_bins, width, hidden)

Schemas are written out by hand (:mod:`flambient.config`) or derived from a dataclass's
defaults (:func:`dataclass_fields`, the training config) or from a constructor's signature
(:func:`signature_fields`, the model families), so a new setting or a new family is checked
without new validation code.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text", dict: "a mapping (key: value lines)",
               list: "a list"}


@dataclass(frozen=True)
class Field:
    """One setting: its type, default and allowed values.

    Attributes:
        kind: bool, int, float, str, dict or list (ints are accepted for float; bools never
            count as numbers); None accepts any value.
        default: value when the key is absent.
        lo, hi: inclusive range for numbers (None = unbounded).
        choices: allowed strings (compared case-insensitively; returned lower-case).
        optional: whether ``null`` is allowed (it then means "unset", returned as None).
    """

    kind: type | None
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False

    def allowed(self) -> str:
        """What the field accepts, for error hints."""
        if self.choices:
            text = ", ".join(self.choices)
        elif self.kind in (int, float) and (self.lo is not None or self.hi is not None):
            name = _KIND_NAMES[self.kind]
            if self.lo is not None and self.hi is not None:
                text = f"{name} from {self.lo:g} to {self.hi:g}"
            elif self.lo is not None:
                text = f"{name} >= {self.lo:g}"
            else:
                text = f"{name} <= {self.hi:g}"
        else:
            text = _KIND_NAMES.get(self.kind, "any value") if self.kind is not None else "any value"
        return text + (" or null" if self.optional else "")

    def check(self, key: str, value: Any, where: Path | None) -> Any:
        """The validated (coerced) value, or :class:`ConfigError`."""
        if value is None and self.optional:
            return None
        kind = self.kind
        ok = True
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok and isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
                ok, value = True, int(value)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif kind is str:
            ok = isinstance(value, str)
        elif kind is dict:
            ok = isinstance(value, dict)
        elif kind is list:
            ok = isinstance(value, (list, tuple))
        if not ok:
            raise ConfigError(f"{key}: bad value {_short(value)}", where, f"allowed: {self.allowed()}")
        if self.choices is not None:
            if value.lower() not in self.choices:
                raise ConfigError(f"{key}: bad value {_short(value)}", where, f"allowed: {self.allowed()}")
            value = value.lower()
        if kind in (int, float) and ((self.lo is not None and value < self.lo) or
                                     (self.hi is not None and value > self.hi)):
            raise ConfigError(f"{key}: {_short(value)} is out of range", where, f"allowed: {self.allowed()}")
        return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _join(section: str, key: Any) -> str:
    return f"{section}.{key}" if section else str(key)


def mapping(doc: Any, section: str, where: Path | None) -> dict[str, Any]:
    """``doc`` as a dict (None -> {}); :class:`ConfigError` when it is not a mapping."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{section or 'file'}: expected a mapping of keys, got {type(doc).__name__}", where,
                          "allowed: key: value lines")
    return doc


def validate(doc: Any, schema: Mapping[str, Field], where: Path | None = None, section: str = "",
             defaults: bool = False) -> dict[str, Any]:
    """Check mapping ``doc`` against ``schema``; returns ``{key: value}`` for the keys present.

    With ``defaults`` every key of the schema is returned (absent ones at their default).
    ``section`` prefixes keys in messages (``output`` -> ``output.quality``); ``where`` is the
    file named in them. Unknown keys, wrong types and out-of-range values raise
    :class:`ConfigError`.
    """
    d = mapping(doc, section, where)
    for k in d:
        if k not in schema:
            raise ConfigError(f"{_join(section, k)}: unknown key", where,
                              f"allowed: {', '.join(schema) or 'no keys'}")
    out = {k: schema[k].check(_join(section, k), v, where) for k, v in d.items()}
    if defaults:
        out = {k: out.get(k, f.default) for k, f in schema.items()}
    return out


def kind_of(default: Any) -> type | None:
    """The :class:`Field` kind implied by a default value (None for anything else)."""
    for k in (bool, int, float, str, dict, list):
        if isinstance(default, k):
            return k
    return None


def dataclass_fields(cls: type, **overrides: Field) -> dict[str, Field]:
    """A schema from a dataclass: each field's kind from its default; ``overrides`` refine fields."""
    out: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        out[f.name] = overrides.get(f.name, Field(kind_of(default), default, optional=default is None))
    return out


def signature_fields(func: Callable[..., Any]) -> dict[str, Field] | None:
    """A schema from a function's keyword parameters and their defaults (``self`` left out).

    Returns None when the function names no parameters but takes ``**kwargs`` (nothing can
    be checked then). Parameters without a default accept any value.
    """
    params = [p for name, p in inspect.signature(func).parameters.items() if name != "self"]
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not named and any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    out: dict[str, Field] = {}
    for p in named:
        default = None if p.default is inspect.Parameter.empty else p.default
        out[p.name] = Field(kind_of(default) if default is not None else None, default, optional=default is None)
    return out

"""EXIF through exifread: capture time, exposure, flash, camera and lens of one frame.

:func:`read_exif` never raises for missing or malformed metadata: every field it cannot read
is ``None``. Works on JPEG, TIFF-based RAW (NEF, CR2, ARW, PEF, DNG, ...), RW2, IIQ and,
where exifread can parse them, HEIF/CR3 files.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

# exifread logs "File format not recognized." for every non-EXIF file; we report our own errors.
logging.getLogger("exifread").setLevel(logging.CRITICAL)


@dataclass
class ExifInfo:
    """The EXIF fields flambient uses; each is ``None`` when the file does not carry it.

    ``capture_time`` is a naive or offset-aware datetime including sub-seconds;
    ``exposure_time`` in seconds; ``exposure_bias`` in EV; ``focal_length`` in mm;
    ``orientation`` the EXIF code 1-8.
    """

    capture_time: datetime | None = None
    exposure_time: float | None = None
    f_number: float | None = None
    iso: float | None = None
    exposure_bias: float | None = None
    flash_fired: bool | None = None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    focal_length: float | None = None
    orientation: int | None = None

    @property
    def camera(self) -> str | None:
        """``"Make Model"`` (model alone when it already names the make), or None."""
        if not self.make and not self.model:
            return None
        make, model = (self.make or "").strip(), (self.model or "").strip()
        if make and model.lower().startswith(make.split()[0].lower()):
            return model
        return f"{make} {model}".strip()

    def exposure_value(self) -> float | None:
        """Log2 of the light the exposure gathers, ``log2(t * iso / N**2)`` (None if unknown).

        Differences of this value between two frames are their exposure difference in EV
        (positive = more light gathered). Aperture defaults to the other frames' when absent:
        callers compare frames of one set, so a missing f-number counts as unchanged.
        """
        if not self.exposure_time or self.exposure_time <= 0:
            return None
        iso = self.iso if self.iso and self.iso > 0 else 100.0
        n = self.f_number if self.f_number and self.f_number > 0 else 1.0
        return math.log2(self.exposure_time * iso / 100.0 / (n * n))

    def to_dict(self) -> dict[str, Any]:
        """A YAML-safe dict (capture time as ISO 8601 text, numbers rounded sensibly)."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if isinstance(v, datetime):
                v = v.isoformat()
            elif isinstance(v, float):
                v = float(f"{v:.6g}")
            out[k] = v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ExifInfo:
        """Inverse of :meth:`to_dict` (unknown keys ignored, bad values become None)."""
        d = d or {}
        kw: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(f.name)
            if v is None:
                continue
            try:
                if f.name == "capture_time":
                    v = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
                elif f.name in ("make", "model", "lens"):
                    v = str(v)
                elif f.name == "flash_fired":
                    v = bool(v)
                elif f.name == "orientation":
                    v = int(v)
                else:
                    v = float(v)
            except (TypeError, ValueError):
                continue
            kw[f.name] = v
        return cls(**kw)


def read_exif(path: str | Path) -> ExifInfo:
    """Read the EXIF of ``path``; never raises for bad metadata (fields become ``None``).

    A missing or unreadable file also gives an all-``None`` result: reading pixels is what
    reports those errors.
    """
    p = Path(path)
    tags = _read_tags(p)
    info = _from_tags(tags) if tags else ExifInfo()
    if info.exposure_time is None or info.capture_time is None:
        _fill_from_libraw(p, info)
    return info


def _from_tags(tags: dict[str, Any]) -> ExifInfo:
    return ExifInfo(
        capture_time=_capture_time(tags),
        exposure_time=_num(tags, "EXIF ExposureTime", positive=True),
        f_number=_num(tags, "EXIF FNumber", positive=True),
        iso=_num(tags, "EXIF ISOSpeedRatings", "EXIF PhotographicSensitivity", "EXIF RecommendedExposureIndex",
                 positive=True),
        exposure_bias=_num(tags, "EXIF ExposureBiasValue"),
        flash_fired=_flash(tags),
        make=_text(tags, "Image Make"),
        model=_text(tags, "Image Model"),
        lens=_text(tags, "EXIF LensModel", "MakerNote LensModel", "EXIF LensMake"),
        focal_length=_num(tags, "EXIF FocalLength", positive=True),
        orientation=_orientation(tags),
    )


def _fill_from_libraw(p: Path, info: ExifInfo) -> None:
    """Fill missing exposure fields from LibRaw's own metadata parser (RAW files only).

    exifread does not parse every RAW container (CR3, RAF, CRW, MRW, X3F); LibRaw does. Only
    fields still ``None`` are set; LibRaw gives no flash flag, sub-seconds or lens name.
    """
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return
    from .sniff import sniff_bytes

    if sniff_bytes(head.ljust(64, b"\x00")) not in ("raw", "tiff"):
        return
    try:
        import rawpy

        with rawpy.imread(str(p)) as raw:
            other = raw.other
    except Exception:  # not a RAW LibRaw can open, or a truncated one: nothing more to learn
        return
    ts = getattr(other, "timestamp", None)
    if not (other.iso_speed > 0 and isinstance(ts, datetime) and ts.year > 1970):
        return  # LibRaw fills defaults (1 s, f/1) when the file records nothing: not evidence
    if info.exposure_time is None and other.shutter_speed > 0:
        info.exposure_time = float(other.shutter_speed)
    if info.iso is None and other.iso_speed > 0:
        info.iso = float(other.iso_speed)
    if info.f_number is None and other.aperture > 0:
        info.f_number = float(other.aperture)
    if info.focal_length is None and other.focal_length > 0:
        info.focal_length = float(other.focal_length)
    if info.capture_time is None:
        info.capture_time = ts.replace(tzinfo=None)


def _read_tags(p: Path) -> dict[str, Any]:
    import exifread

    try:
        with open(p, "rb") as fh:
            return dict(exifread.process_file(fh, details=False))
    except Exception:  # exifread raises many kinds on malformed files; metadata is optional
        return {}


def _values(tag: Any) -> list[Any]:
    vals = getattr(tag, "values", tag)
    if isinstance(vals, (list, tuple)):
        return list(vals)
    return [vals]


def _to_float(v: Any) -> float | None:
    try:
        if hasattr(v, "num") and hasattr(v, "den"):
            return float(v.num) / float(v.den) if v.den else None
        if isinstance(v, Fraction):
            return float(v)
        if isinstance(v, (bytes, bytearray)):
            v = v.decode("ascii", "ignore")
        if isinstance(v, str):
            v = v.strip()
            if "/" in v:
                a, b = v.split("/", 1)
                return float(a) / float(b) if float(b) else None
        f = float(v)
        return f if math.isfinite(f) else None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None


def _num(tags: dict[str, Any], *keys: str, positive: bool = False) -> float | None:
    for key in keys:
        if key in tags:
            vals = _values(tags[key])
            if not vals:
                continue
            f = _to_float(vals[0])
            if f is None or (positive and f <= 0):
                continue
            return f
    return None


def _text(tags: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        if key in tags:
            s = str(tags[key]).replace("\x00", "").strip()
            if s and s.lower() not in ("unknown", "none"):
                return s
    return None


def _flash(tags: dict[str, Any]) -> bool | None:
    if "EXIF Flash" not in tags:
        return None
    vals = _values(tags["EXIF Flash"])
    try:
        return bool(int(vals[0]) & 1)
    except (TypeError, ValueError, IndexError):
        text = str(tags["EXIF Flash"]).lower()
        if "did not fire" in text or "no flash" in text:
            return False
        if "fired" in text:
            return True
        return None


def _orientation(tags: dict[str, Any]) -> int | None:
    if "Image Orientation" not in tags:
        return None
    vals = _values(tags["Image Orientation"])
    try:
        o = int(vals[0])
    except (TypeError, ValueError, IndexError):
        return None
    return o if 1 <= o <= 8 else None


def _capture_time(tags: dict[str, Any]) -> datetime | None:
    for key, sub_key, off_key in (
        ("EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal", "EXIF OffsetTimeOriginal"),
        ("EXIF DateTimeDigitized", "EXIF SubSecTimeDigitized", "EXIF OffsetTimeDigitized"),
        ("Image DateTime", "EXIF SubSecTime", "EXIF OffsetTime"),
    ):
        dt = _parse_datetime(_text(tags, key))
        if dt is None:
            continue
        sub = _text(tags, sub_key)
        if sub and sub.isdigit():
            dt += timedelta(seconds=float(f"0.{sub}"))
        off = _parse_offset(_text(tags, off_key))
        if off is not None:
            dt = dt.replace(tzinfo=off)
        return dt
    return None


def _parse_datetime(s: str | None) -> datetime | None:
    if not s:
        return None
    s = s.strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y.%m.%d %H.%M.%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            dt = datetime.strptime(s[:19] if "%S" in fmt else s[:16], fmt)
        except ValueError:
            continue
        return dt if dt.year > 1970 else None
    return None


def _parse_offset(s: str | None) -> timezone | None:
    if not s or len(s) < 6 or s[0] not in "+-" or s[3] != ":":
        return None
    try:
        h, m = int(s[1:3]), int(s[4:6])
    except ValueError:
        return None
    sign = 1 if s[0] == "+" else -1
    return timezone(sign * timedelta(hours=h, minutes=m))

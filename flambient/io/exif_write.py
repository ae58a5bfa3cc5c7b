"""Writing TIFF/EXIF metadata: a small little-endian TIFF IFD encoder and an EXIF-bytes builder.

Used by :mod:`flambient.io.dng` (the DNG writer) and by JPEG writers that need camera-like EXIF
(``synth --format jpg``, ``process`` copying a source frame's EXIF into its output).

The EXIF fields accepted in an ``exif`` dict (all optional; unknown keys raise ``ValueError``):

=====================  ==========================================  ===============
key                    value                                       EXIF tag
=====================  ==========================================  ===============
``ExposureTime``       seconds (float)                             33434
``FNumber``            f-number (float)                            33437
``ISO``                ISO speed (int)                             34855
``DateTimeOriginal``   :class:`datetime.datetime` (sub-seconds     36867, 36868,
                       go to SubSecTimeOriginal; tz-aware adds     37521, 36881
                       OffsetTimeOriginal)
``Flash``              EXIF flash word (int) or bool (fired)       37385
``FocalLength``        millimetres (float)                         37386
``ExposureBiasValue``  EV (float)                                  37380
``ExposureProgram``    EXIF code (int)                             34850
``LensModel``          text                                        42036
=====================  ==========================================  ===============

ExifVersion (36864) = "0231" is always written. The EXIF fields live in a real EXIF sub-IFD
(pointer tag 34665): LibRaw (rawpy) only reads ISO and capture time from there.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exif import ExifInfo

# TIFF field types
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10
_TYPE_SIZE = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SRATIONAL: 8}

EXIF_IFD_POINTER = 34665

#: Flash word for "fired" / "did not fire" (EXIF 2.3 table: bit 0 = fired).
FLASH_FIRED = 0x0001
FLASH_NOT_FIRED = 0x0000


@dataclass(frozen=True)
class Entry:
    """One IFD entry: ``tag``, TIFF ``type`` and its ``values`` (bytes for BYTE/ASCII/UNDEFINED)."""

    tag: int
    type: int
    values: Any

    def payload(self) -> tuple[int, bytes]:
        """``(count, packed little-endian bytes)`` of this entry's value."""
        t, v = self.type, self.values
        if t in (BYTE, UNDEFINED):
            b = bytes(v)
            return len(b), b
        if t == ASCII:
            b = (v.encode("ascii", "replace") if isinstance(v, str) else bytes(v)) + b"\0"
            return len(b), b
        vals = list(v) if isinstance(v, (list, tuple)) else [v]
        if t == SHORT:
            return len(vals), struct.pack(f"<{len(vals)}H", *[int(x) for x in vals])
        if t == LONG:
            return len(vals), struct.pack(f"<{len(vals)}I", *[int(x) for x in vals])
        if t in (RATIONAL, SRATIONAL):
            out = bytearray()
            for x in vals:
                num, den = _rational(x, signed=(t == SRATIONAL))
                out += struct.pack("<ii" if t == SRATIONAL else "<II", num, den)
            return len(vals), bytes(out)
        raise ValueError(f"unsupported TIFF type {t}")


def _rational(x: float | Fraction | tuple[int, int], signed: bool) -> tuple[int, int]:
    """A (numerator, denominator) pair for ``x`` that fits 32 bits."""
    if isinstance(x, tuple):
        return int(x[0]), int(x[1])
    f = Fraction(x).limit_denominator(1_000_000) if not isinstance(x, Fraction) else x
    lim = 2**31 - 1 if signed else 2**32 - 1
    while abs(f.numerator) > lim or f.denominator > lim:
        f = f.limit_denominator(max(1, f.denominator // 10))
    return f.numerator, f.denominator


def ifd_size(entries: Sequence[Entry]) -> int:
    """Bytes an IFD with ``entries`` takes, including its out-of-line values (word-aligned)."""
    size = 2 + 12 * len(entries) + 4
    for e in entries:
        _, data = e.payload()
        if len(data) > 4:
            size += len(data) + (len(data) & 1)
    return size


def encode_ifd(entries: Iterable[Entry], offset: int, next_ifd: int = 0) -> bytes:
    """Encode one IFD placed at file ``offset``; out-of-line values follow the entry table.

    Entries are sorted by tag as TIFF requires. ``next_ifd`` is the offset of the next IFD
    (0 = none).
    """
    ents = sorted(entries, key=lambda e: e.tag)
    table = bytearray(struct.pack("<H", len(ents)))
    extra = bytearray()
    data_at = offset + 2 + 12 * len(ents) + 4
    for e in ents:
        count, data = e.payload()
        if len(data) <= 4:
            table += struct.pack("<HHI", e.tag, e.type, count) + data.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", e.tag, e.type, count, data_at + len(extra))
            extra += data
            if len(data) & 1:
                extra += b"\0"
    table += struct.pack("<I", next_ifd)
    return bytes(table + extra)


def exif_entries(exif: dict[str, Any]) -> list[Entry]:
    """EXIF sub-IFD entries for an ``exif`` dict (keys in the module docstring)."""
    out = [Entry(36864, UNDEFINED, b"0231")]
    for key, val in exif.items():
        if val is None:
            continue
        if key == "ExposureTime":
            out.append(Entry(33434, RATIONAL, _exposure_fraction(float(val))))
        elif key == "FNumber":
            out.append(Entry(33437, RATIONAL, Fraction(round(float(val) * 10), 10)))
        elif key == "ISO":
            out.append(Entry(34855, SHORT, min(65535, int(round(float(val))))))
        elif key == "ExposureProgram":
            out.append(Entry(34850, SHORT, int(val)))
        elif key == "DateTimeOriginal":
            out.extend(_datetime_entries(val))
        elif key == "Flash":
            word = (FLASH_FIRED if val else FLASH_NOT_FIRED) if isinstance(val, bool) else int(val)
            out.append(Entry(37385, SHORT, word))
        elif key == "FocalLength":
            out.append(Entry(37386, RATIONAL, Fraction(round(float(val) * 10), 10)))
        elif key == "ExposureBiasValue":
            out.append(Entry(37380, SRATIONAL, Fraction(round(float(val) * 3), 3)))
        elif key == "LensModel":
            out.append(Entry(42036, ASCII, str(val)))
        else:
            raise ValueError(f"unknown EXIF key {key!r}")
    return out


def exif_fields(info: ExifInfo) -> dict[str, Any]:
    """The ``exif`` dict (keys above) of what an :class:`~flambient.io.exif.ExifInfo` knows."""
    fields: dict[str, Any] = {
        "ExposureTime": info.exposure_time if info.exposure_time and info.exposure_time > 0 else None,
        "FNumber": info.f_number or None,
        "ISO": info.iso or None,
        "DateTimeOriginal": info.capture_time,
        "Flash": None if info.flash_fired is None else bool(info.flash_fired),
        "FocalLength": info.focal_length or None,
        "ExposureBiasValue": info.exposure_bias,
        "LensModel": info.lens or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _exposure_fraction(t: float) -> Fraction:
    """Shutter speeds as cameras write them: 1/125 for short exposures, 0.3 or 2 for long."""
    if t <= 0:
        raise ValueError(f"exposure time must be positive, got {t}")
    if t < 0.5:
        return Fraction(1, max(1, round(1.0 / t)))
    return Fraction(round(t * 10), 10)


def _datetime_entries(dt: datetime) -> list[Entry]:
    """DateTimeOriginal/Digitized, SubSecTimeOriginal and (tz-aware) OffsetTimeOriginal."""
    stamp = dt.strftime("%Y:%m:%d %H:%M:%S")
    ents = [
        Entry(36867, ASCII, stamp),
        Entry(36868, ASCII, stamp),
        Entry(37521, ASCII, f"{dt.microsecond // 1000:03d}"),
    ]
    off = dt.utcoffset()
    if off is not None:
        mins = int(off.total_seconds() // 60)
        sign = "+" if mins >= 0 else "-"
        ents.append(Entry(36881, ASCII, f"{sign}{abs(mins) // 60:02d}:{abs(mins) % 60:02d}"))
    return ents


def camera_entries(make: str, model: str, orientation: int = 1, software: str = "flambient",
                   capture_time: datetime | None = None) -> list[Entry]:
    """IFD0 entries naming the camera: Make, Model, Orientation, Software, DateTime."""
    ents = [
        Entry(271, ASCII, make),
        Entry(272, ASCII, model),
        Entry(274, SHORT, int(orientation)),
        Entry(305, ASCII, software),
    ]
    if capture_time is not None:
        ents.append(Entry(306, ASCII, capture_time.strftime("%Y:%m:%d %H:%M:%S")))
    return ents


def build_exif_bytes(exif: dict[str, Any], *, make: str = "", model: str = "", orientation: int = 1,
                     software: str = "flambient") -> bytes:
    """APP1 EXIF payload (``b"Exif\\0\\0"`` + TIFF) for a JPEG: IFD0 camera tags + EXIF sub-IFD.

    Pass the result as ``exif=`` to :func:`flambient.io.images.write_jpeg` (Pillow writes it
    unchanged into the APP1 segment).
    """
    ifd0 = camera_entries(make, model, orientation, software, exif.get("DateTimeOriginal"))
    ifd0.append(Entry(EXIF_IFD_POINTER, LONG, 0))
    size0 = ifd_size(ifd0)
    exif_off = 8 + size0
    ifd0[-1] = Entry(EXIF_IFD_POINTER, LONG, exif_off)
    head = b"II" + struct.pack("<HI", 42, 8)
    body = encode_ifd(ifd0, 8) + encode_ifd(exif_entries(exif), exif_off)
    return b"Exif\0\0" + head + body

"""Metadata of finals: the reference frame's EXIF, IPTC and XMP, carried over with pyexiv2 (exiv2).

The one place that decides what a final's metadata is. :func:`prepare` reads the source
(any format exiv2 reads: JPEG, TIFF, PNG, DNG and the TIFF-based RAWs, CR3, RAF, RW2, ...;
anything else falls back to the few fields ingest recorded in :class:`~flambient.io.exif.ExifInfo`)
into a small in-memory carrier and edits it there; :meth:`Prepared.apply` then writes it into
the finished file in one rewrite (JPEG and TIFF alike).

What changes on the way (everything else is copied as it is):

- EXIF IFD0 keeps only descriptive tags (:data:`IFD0_KEEP`): no image-structure, DNG or
  sub-image tags of the source; the thumbnail (IFD1) and maker notes are dropped (their
  offsets point into the camera's file, and the thumbnail shows the unedited frame), so are
  subject coordinates in the source's pixel grid and its ImageUniqueID (:data:`PHOTO_DROP`);
- Orientation: 1 when the source's reader rotated the pixels upright (JPEG, RAW;
  :data:`flambient.io.images.ORIENTATION_APPLIED`), else the source's (pixels as stored);
- pixel dimensions (EXIF and XMP) are the final's; ColorSpace is sRGB; resolution (dpi) is
  the source's (72 when it has none);
- Flash is the set's: the flash frame's Flash word when the set has one (fired), else the
  reference's own;
- Software names flambient and an ``xmpMM:History`` event (``derived``) records the model and
  preset;
- ``strip_gps`` removes the EXIF GPS IFD and every XMP GPS property (exif:GPS*, and GPS
  fields of IPTC-extension locations); text locations (city, country) are kept;
- the tags EXIF requires of a JPEG (YCbCrPositioning, ComponentsConfiguration, pixel
  dimensions) are added to JPEG finals and left out of TIFF finals (:data:`JPEG_ONLY`), date
  tags that are not valid dates are dropped, GPS gets its version (and in TIFF its processing
  method), so ``exiftool -validate`` finds nothing to warn about.

pyexiv2 keeps process-wide state (log level, an error buffer), so every call into it holds
one lock.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..log import get_logger
from .exif import ExifInfo

log = get_logger("metadata")
_LOCK = threading.Lock()

#: EXIF IFD0 tags a final keeps from its source (the rest describe the source's pixels or
#: are RAW/DNG-private). Orientation, resolution and Software are set anew.
IFD0_KEEP = frozenset({
    "ImageDescription", "Make", "Model", "Artist", "Copyright", "DateTime", "HostComputer",
    "Rating", "RatingPercent", "XPTitle", "XPComment", "XPAuthor", "XPKeywords", "XPSubject",
    "ExifTag", "GPSTag", "XResolution", "YResolution", "ResolutionUnit",
})
#: EXIF groups (exiv2 key's middle part) copied: IFD0, the EXIF IFD, GPS and interoperability.
GROUPS_KEEP = frozenset({"Image", "Photo", "GPSInfo", "Iop"})
#: EXIF IFD tags not copied: the maker note (offsets into the camera's file), coordinates in
#: the source's pixel grid, and the source image's unique id (the final is another image).
PHOTO_DROP = frozenset({"Exif.Photo.MakerNote", "Exif.Photo.SubjectArea", "Exif.Photo.SubjectLocation",
                        "Exif.Photo.ImageUniqueID"})
#: DNG IFD0 tags with a standard EXIF home: copied there when the source has no value.
DNG_TO_EXIF = {"Exif.Image.CameraSerialNumber": "Exif.Photo.BodySerialNumber",
               "Exif.Image.LensInfo": "Exif.Photo.LensSpecification"}
#: Tags only a JPEG's EXIF has (EXIF requires them there; a TIFF's own tags say the same).
JPEG_ONLY = ("Exif.Image.YCbCrPositioning", "Exif.Photo.ComponentsConfiguration", "Exif.Photo.CompressedBitsPerPixel",
             "Exif.Photo.PixelXDimension", "Exif.Photo.PixelYDimension", "Exif.Iop.InteroperabilityIndex")
#: Date/time tags, dropped when the source's value is not a valid "YYYY:MM:DD HH:MM:SS".
DATE_TAGS = ("Exif.Image.DateTime", "Exif.Photo.DateTimeOriginal", "Exif.Photo.DateTimeDigitized")
FLASH_FIRED = 0x0001
DEFAULT_DPI = 72.0


@dataclass(frozen=True)
class FinalMetadata:
    """What a final's metadata is made of.

    ``source``: the reference frame's file; ``fallback``: its fields as ingest read them (used
    when exiv2 cannot read ``source``); ``flash_source``: a flash frame of the set (None: the
    set has none); ``strip_gps``: drop location coordinates; ``software``: e.g.
    ``"flambient 0.1.0"``; ``history``: the parameters of the processing event.
    """

    source: Path | None = None
    fallback: ExifInfo | None = None
    flash_source: Path | None = None
    strip_gps: bool = False
    software: str = "flambient"
    history: str = ""


@dataclass
class Prepared:
    """Metadata ready to write: an in-memory carrier image holding it, and the density.

    ``dpi``: (x, y) dots per inch for the encoder (JFIF density, TIFF resolution).
    """

    carrier: Any
    dpi: tuple[float, float]

    def apply(self, path: str | Path) -> None:
        """Write the carrier's EXIF, IPTC and XMP into the image file ``path`` (in place; once: frees the carrier).

        The file's pixels and ICC profile are kept. Raises RuntimeError when exiv2 cannot
        write the file.
        """
        import pyexiv2

        with _exiv2(level=3):
            img = pyexiv2.Image(str(path))
            try:
                self.carrier.copy_to_another_image(img, exif=True, iptc=True, xmp=True, comment=False,
                                                   icc=False, thumbnail=False)
            finally:
                img.close()
                self.carrier.close()


@contextmanager
def _exiv2(level: int) -> Iterator[None]:
    """Hold the pyexiv2 lock with exiv2's log level ``level`` (3: errors raise; 4: silent)."""
    import pyexiv2

    with _LOCK:
        pyexiv2.set_log_level(level)
        yield


def read_source(path: Path) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """``(exif, iptc, raw xmp)`` of an image file as pyexiv2 reads them, or None when exiv2 cannot.

    Malformed parts are skipped silently (a final without some source tags beats no final).
    A tag repeated in the file (RAW sub-IFDs) keeps its first value.
    """
    import pyexiv2

    try:
        with _exiv2(level=4):
            img = pyexiv2.Image(str(path))
            try:
                exif, iptc, xmp = img.read_exif(), img.read_iptc(), img.read_raw_xmp()
            finally:
                img.close()
    except Exception:  # exiv2 raises RuntimeError for unknown or broken files; metadata is optional
        return None
    exif = {k: (v[0] if isinstance(v, list) and v else v) for k, v in exif.items()}
    return exif, iptc, xmp


def flash_word(path: Path | None) -> int:
    """The EXIF Flash word of a flash frame, or 1 ("fired") when it records none that fired."""
    if path is None:
        return FLASH_FIRED
    src = read_source(path)
    try:
        word = int(str((src[0] if src else {}).get("Exif.Photo.Flash", "")).split()[0])
    except (ValueError, IndexError):
        return FLASH_FIRED
    return word if word & FLASH_FIRED else FLASH_FIRED


def dpi_of(exif: dict[str, Any]) -> tuple[float, float]:
    """(x, y) dots per inch from EXIF X/YResolution and ResolutionUnit (2 inch, 3 cm); 72 if absent."""
    per_cm = str(exif.get("Exif.Image.ResolutionUnit", "2")).strip() == "3"
    out = []
    for key in ("Exif.Image.XResolution", "Exif.Image.YResolution"):
        try:
            v = float(Fraction(str(exif.get(key, "")).strip()))
        except (ValueError, ZeroDivisionError):
            v = 0.0
        out.append(v * 2.54 if per_cm else v)
    if not all(0 < v < 100_000 for v in out):
        return DEFAULT_DPI, DEFAULT_DPI
    return out[0], out[1]


def copied_exif(exif: dict[str, Any], strip_gps: bool) -> dict[str, Any]:
    """The source EXIF a final keeps (exiv2 keys -> text values), before the final's own edits."""
    out: dict[str, Any] = {}
    for key, val in exif.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[1] not in GROUPS_KEEP or parts[2].startswith("0x"):
            continue
        if parts[1] == "Image" and parts[2] not in IFD0_KEEP:
            continue
        if key in PHOTO_DROP or (strip_gps and (parts[1] == "GPSInfo" or key == "Exif.Image.GPSTag")):
            continue
        out[key] = val
    for dng, std in DNG_TO_EXIF.items():
        if exif.get(dng) and not out.get(std):
            out[std] = exif[dng]
    return out


def final_exif_edits(exif: dict[str, Any], *, orientation: int, size: tuple[int, int], jpeg: bool,
                     software: str, flash: int | None) -> dict[str, Any]:
    """The tags a final sets over its copied EXIF ``exif`` (``size`` = (width, height) in pixels)."""
    x, y = dpi_of(exif)
    edits: dict[str, Any] = {
        "Exif.Image.Orientation": str(orientation),
        "Exif.Image.Software": software,
        "Exif.Image.XResolution": _rational(x), "Exif.Image.YResolution": _rational(y),
        "Exif.Image.ResolutionUnit": "2",
        "Exif.Photo.ColorSpace": "1",
    }
    if _exif_version(exif) < "0231":  # 2.31 names OffsetTime*; older readers ignore what they lack
        edits["Exif.Photo.ExifVersion"] = "48 50 51 49"
    if not exif.get("Exif.Photo.FlashpixVersion"):
        edits["Exif.Photo.FlashpixVersion"] = "48 49 48 48"
    if flash is not None:
        edits["Exif.Photo.Flash"] = str(flash)
    if jpeg:
        edits.update({"Exif.Image.YCbCrPositioning": exif.get("Exif.Image.YCbCrPositioning") or "1",
                      "Exif.Photo.ComponentsConfiguration": exif.get("Exif.Photo.ComponentsConfiguration") or "1 2 3 0",
                      "Exif.Photo.PixelXDimension": str(size[0]), "Exif.Photo.PixelYDimension": str(size[1])})
    else:
        edits.update({k: None for k in JPEG_ONLY})
    edits.update(_gps_edits(exif, jpeg))
    edits.update({k: None for k in DATE_TAGS if k in exif and not _valid_date(str(exif[k]))})
    return edits


def _gps_edits(exif: dict[str, Any], jpeg: bool) -> dict[str, Any]:
    """GPSVersionID when GPS tags lack it; GPSProcessingMethod "GPS" in a TIFF (required there)."""
    if not any(k.startswith("Exif.GPSInfo.") for k in exif):
        return {}
    edits: dict[str, Any] = {}
    if not exif.get("Exif.GPSInfo.GPSVersionID"):
        edits["Exif.GPSInfo.GPSVersionID"] = "2 3 0 0"
    method = str(exif.get("Exif.GPSInfo.GPSProcessingMethod", "")).split()[-1:]
    if not jpeg and method not in (["GPS"], ["CELLID"], ["WLAN"], ["MANUAL"]):
        edits["Exif.GPSInfo.GPSProcessingMethod"] = "charset=Ascii GPS"
    return edits


def _valid_date(text: str) -> bool:
    from datetime import datetime

    try:
        datetime.strptime(text.strip(), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return False
    return True


def _exif_version(exif: dict[str, Any]) -> str:
    """The EXIF version as text ("0230"), "" when absent."""
    raw = str(exif.get("Exif.Photo.ExifVersion", "")).split()
    try:
        return bytes(int(b) for b in raw).decode("ascii") if len(raw) == 4 else "".join(raw)
    except ValueError:
        return ""


def _rational(v: float) -> str:
    f = Fraction(v).limit_denominator(1000)
    return f"{f.numerator}/{f.denominator}"


def xmp_edits(xmp: dict[str, Any], *, orientation: int, size: tuple[int, int], strip_gps: bool,
              software: str, history: str) -> dict[str, Any]:
    """Edits to the source XMP ``xmp`` (pyexiv2's parsed form): GPS, orientation, size, history."""
    edits: dict[str, Any] = {}
    if strip_gps:
        edits.update({k: None for k in xmp if "GPS" in k.rsplit(".", 1)[-1] or "GPS" in k.rsplit("/", 1)[-1]})
    for key, val in (("Xmp.tiff.Orientation", orientation), ("Xmp.tiff.ImageWidth", size[0]),
                     ("Xmp.tiff.ImageLength", size[1]), ("Xmp.exif.PixelXDimension", size[0]),
                     ("Xmp.exif.PixelYDimension", size[1])):
        if key in xmp:
            edits[key] = str(val)
    edits.update({k: None for k in xmp if k.startswith("Xmp.xmp.Thumbnails")})
    n = 1 + sum(1 for k in xmp if k.startswith("Xmp.xmpMM.History[") and k.endswith("]/stEvt:action"))
    if n == 1:
        edits["Xmp.xmpMM.History"] = []
    event = f"Xmp.xmpMM.History[{n}]/stEvt:"
    edits.update({event + "action": "derived", event + "softwareAgent": software})
    if history:
        edits[event + "parameters"] = history
    return edits


def _blank_jpeg(exif: bytes | None = None) -> bytes:
    """An 8x8 grey JPEG (the carrier), with APP1 ``exif`` bytes when given."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buf, format="JPEG", **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _fallback_exif(info: ExifInfo | None) -> dict[str, Any]:
    """EXIF of a source exiv2 cannot read, from ingest's :class:`ExifInfo` (through the IFD encoder)."""
    import pyexiv2

    from .exif_write import build_exif_bytes, exif_fields

    info = info or ExifInfo()
    data = build_exif_bytes(exif_fields(info), make=info.make or "", model=info.model or "",
                            orientation=info.orientation or 1)
    with _exiv2(level=4):
        img = pyexiv2.ImageData(_blank_jpeg(data))
        try:
            return {k: (v[0] if isinstance(v, list) and v else v) for k, v in img.read_exif().items()}
        finally:
            img.close()


def prepare(meta: FinalMetadata, size: tuple[int, int], jpeg: bool) -> Prepared:
    """Read the source and build the final's metadata in memory (``size`` = (width, height) px).

    Raises RuntimeError when exiv2 cannot build the metadata (a bug, not a user error).
    """
    import pyexiv2

    from .images import ORIENTATION_APPLIED, image_kind

    src = read_source(meta.source) if meta.source is not None else None
    exif, iptc, raw_xmp = src if src is not None else (_fallback_exif(meta.fallback), {}, "")
    try:
        upright = meta.source is None or image_kind(meta.source) in ORIENTATION_APPLIED
    except Exception:  # the source vanished after decoding: its pixels were decoded upright or not at all
        upright = True
    orientation = 1 if upright else _orientation(exif)
    exif = copied_exif(exif, meta.strip_gps)
    flash = flash_word(meta.flash_source) if meta.flash_source is not None else None
    exif.update(final_exif_edits(exif, orientation=orientation, size=size, jpeg=jpeg, software=meta.software,
                                 flash=flash))
    with _exiv2(level=3):
        carrier = pyexiv2.ImageData(_blank_jpeg())
        carrier.modify_exif({k: v for k, v in exif.items() if v is not None})
        if iptc and _usable(meta.source, "iptc", iptc):
            carrier.modify_iptc(iptc)
        if raw_xmp and _usable(meta.source, "xmp", raw_xmp):
            carrier.modify_raw_xmp(raw_xmp)
        carrier.modify_xmp(xmp_edits(carrier.read_xmp(), orientation=orientation, size=size,
                                     strip_gps=meta.strip_gps, software=meta.software, history=meta.history))
    return Prepared(carrier, dpi_of(exif))


def _usable(source: Path | None, part: str, value: Any) -> bool:
    """Whether the source's IPTC (dict) or XMP (packet) survives a write and read-back (call under the lock).

    A malformed part is left out of the final with a warning rather than failing the set.
    """
    import pyexiv2

    probe = pyexiv2.ImageData(_blank_jpeg())
    try:
        if part == "iptc":
            probe.modify_iptc(value)
            probe.read_iptc()
        else:
            probe.modify_raw_xmp(value)
            probe.read_xmp()
        return True
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "unreadable"
        log.warning("%s: its %s is not carried into the final (%s)", source, part.upper(), reason)
        return False
    finally:
        try:
            probe.close()
        except RuntimeError:
            pass  # the rest of the probe's failure, still in pyexiv2's error buffer: drained here


def _orientation(exif: dict[str, Any]) -> int:
    try:
        o = int(str(exif.get("Exif.Image.Orientation", "1")).split()[0])
    except (ValueError, IndexError):
        return 1
    return o if 1 <= o <= 8 else 1

"""Read any supported image into linear float32 RGB; write finals and caches atomically.

Arrays are numpy float32, HxWx3, linear light with sRGB primaries unless a name says
``srgb``. 8- and 16-bit JPEG/PNG/TIFF files are taken as sRGB-encoded and decoded to linear;
float TIFF and OpenEXR files are taken as already linear. Orientation: readers return pixels
as displayed (EXIF orientation applied), so the whole pipeline works upright.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..colour import linear_to_srgb, srgb_to_linear
from ..errors import InputError, first_line
from .atomic import atomic_path
from .limits import check_image_size
from .sniff import sniff_format

#: Camera RAW file extensions. A TIFF-magic file with one of them is read as a RAW even when
#: its first IFD looks like a plain picture (a Phase One IIQ opens with a tiny RGB preview).
RAW_EXTENSIONS = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".rw2",
     ".orf", ".pef", ".srw", ".x3f", ".iiq", ".3fr", ".fff", ".mrw", ".rwl", ".erf", ".mos",
     ".kdc", ".dcr", ".raw"}
)
#: File extensions the shoot scanner considers (content still decides the reader).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".exr"} | RAW_EXTENSIONS)


def is_plain_tiff(path: str | Path) -> bool:
    """True when a TIFF-magic file is an ordinary TIFF image, not a TIFF-based RAW.

    TIFF-based RAWs (DNG, NEF, ARW, PEF, ...) carry DNG tags, a CFA photometric, or a
    camera Make with RAW sub-IFDs, or come with a camera RAW extension (:data:`RAW_EXTENSIONS`:
    an IIQ's first IFD is an RGB preview); a plain TIFF is RGB/greyscale with no DNGVersion.
    """
    import tifffile

    if Path(path).suffix.lower() in RAW_EXTENSIONS:
        return False
    try:
        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages[0]
            tags = page.tags  # type: ignore[union-attr]
            if "DNGVersion" in tags or 50706 in tags:
                return False
            if int(getattr(page, "photometric", 2)) in (32803, 34892):  # CFA, LinearRaw
                return False
            make = tags.get("Make")
            if make is not None and "SubIFDs" in tags:
                return False
            return True
    except Exception:
        return False


#: Kinds of :func:`image_kind` whose reader applies the EXIF orientation (pixels come out
#: upright); the other readers return the pixels as stored.
ORIENTATION_APPLIED = frozenset({"jpeg", "raw"})


def image_kind(path: str | Path) -> str:
    """The reader :func:`read_linear` uses for ``path``: ``raw``, ``jpeg``, ``png``, ``tiff`` or ``exr``.

    Like :func:`flambient.io.sniff.sniff_format` (by content), with TIFF-based RAWs as ``raw``.
    Raises :class:`InputError` for missing, empty or unknown files.
    """
    p = Path(path)
    fmt = sniff_format(p)
    return "raw" if fmt == "tiff" and not is_plain_tiff(p) else fmt


def read_linear(path: str | Path, half_size: bool = False) -> np.ndarray:
    """Decode ``path`` (RAW, JPEG, PNG, TIFF or EXR) to linear float32 RGB, HxWx3.

    ``half_size`` halves each side (RAW: LibRaw's fast half-size mode; others: area resize),
    for previews and grouping. RAW data is not auto-brightened and not rescaled: 1.0 is the
    sensor's white level. Raises :class:`InputError` with a one-line reason on failure.
    """
    p = Path(path)
    fmt = image_kind(p)
    if fmt == "raw":
        from .raw import read_raw_linear

        return read_raw_linear(p, half_size=half_size)
    if fmt == "exr":
        img = read_exr(p)
    elif fmt == "tiff":
        img = _read_tiff(p)
    elif fmt == "png":
        img = srgb_to_linear(_to_rgb3(_read_png_cv2(p), p))
    else:
        img = _read_jpeg(p)
    if half_size:
        img = _half(img)
    return img


def _half(img: np.ndarray) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)


def _to_rgb3(arr: np.ndarray, p: Path) -> np.ndarray:
    """Normalise a decoded array to HxWx3 (greyscale repeated, alpha dropped)."""
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise InputError(f"unsupported image layout {arr.shape}", p)
    return arr[:, :, :3]


def _read_jpeg(p: Path) -> np.ndarray:
    """JPEG via Pillow (strict about truncation; EXIF orientation applied), sRGB -> linear."""
    from PIL import Image, ImageOps

    _pillow_limit()
    try:
        with Image.open(p) as im:
            check_image_size(*im.size, p)
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
            else:
                if im.mode not in ("RGB", "L"):
                    im = im.convert("RGB")
                arr = np.asarray(im, dtype=np.float32) / 255.0
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"corrupt or truncated image ({_reason(exc)})", p) from None
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return srgb_to_linear(_to_rgb3(arr, p))


def _pillow_limit() -> None:
    """Hand Pillow's bomb check to ours (:func:`check_image_size` runs after the lazy open)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None


def png_size(p: Path) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR chunk (raises :class:`InputError` when malformed)."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(24)
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", p) from None
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise InputError("corrupt or unreadable PNG (no IHDR header)", p)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _read_png_cv2(p: Path) -> np.ndarray:
    """PNG (8 or 16 bit, grey/RGB/RGBA) as float32 sRGB signal in [0, 1]."""
    import cv2

    check_image_size(*png_size(p), p)
    arr = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError("corrupt or unreadable PNG", p)
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    arr = arr.astype(np.float32) / scale
    if arr.ndim == 3:
        arr = arr[:, :, 2::-1] if arr.shape[2] >= 3 else arr
    return arr


def _reason(exc: BaseException) -> str:
    return first_line(exc, 160)


def _read_tiff(p: Path) -> np.ndarray:
    """TIFF via tifffile: integer data is sRGB-encoded, float data is linear."""
    import tifffile

    try:
        with tifffile.TiffFile(str(p)) as tif:
            page = tif.pages[0]
            check_image_size(int(page.imagewidth), int(page.imagelength), p)  # type: ignore[union-attr]
            series = tif.series[0]
            arr = series.asarray()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"corrupt or unsupported TIFF ({_reason(exc)})", p) from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if np.issubdtype(arr.dtype, np.floating):
        return np.ascontiguousarray(_to_rgb3(arr.astype(np.float32), p))
    scale = float(np.iinfo(arr.dtype).max)
    return srgb_to_linear(_to_rgb3(arr.astype(np.float32) / scale, p))


def read_srgb(path: str | Path) -> np.ndarray:
    """Read an image as sRGB signal values in [0, 1], float32 HxWx3 (finals, targets, truth)."""
    return linear_to_srgb(read_linear(path))


# ----------------------------------------------------------------------------- OpenEXR


def read_exr(path: str | Path) -> np.ndarray:
    """Read an OpenEXR file's RGB (or R, G, B) channels as float32 HxWx3 (linear)."""
    import OpenEXR

    p = Path(path)
    try:
        with OpenEXR.File(str(p), header_only=True) as hdr:
            (x0, y0), (x1, y1) = hdr.header()["dataWindow"]
        check_image_size(int(x1) - int(x0) + 1, int(y1) - int(y0) + 1, p)
        with OpenEXR.File(str(p)) as f:
            chans = f.channels()
            if "RGB" in chans:
                arr = np.asarray(chans["RGB"].pixels)
            elif "RGBA" in chans:
                arr = np.asarray(chans["RGBA"].pixels)[..., :3]
            elif all(c in chans for c in ("R", "G", "B")):
                arr = np.stack([np.asarray(chans[c].pixels) for c in ("R", "G", "B")], axis=-1)
            elif "Y" in chans:
                arr = np.asarray(chans["Y"].pixels)
            else:
                raise InputError(f"EXR has no RGB channels (found {sorted(chans)})", p)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"corrupt or unreadable EXR ({_reason(exc)})", p) from None
    return np.ascontiguousarray(_to_rgb3(arr.astype(np.float32), p))


def write_exr(path: str | Path, linear: np.ndarray, half: bool = True) -> Path:
    """Write linear HxWx3 RGB to OpenEXR (ZIP compressed; half floats by default), atomically."""
    import OpenEXR

    arr = np.ascontiguousarray(linear[:, :, :3], dtype=np.float16 if half else np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path) as tmp:
        with OpenEXR.File(header, {"RGB": arr}) as f:
            f.write(str(tmp))
    return Path(path)


# ----------------------------------------------------------------------------- writers


def srgb_icc_profile() -> bytes:
    """The bytes of an sRGB ICC profile (built by LittleCMS through Pillow).

    LittleCMS stamps the creation time into the header (bytes 24-35); it is fixed to
    2000-01-01 so that identical images give byte-identical files (deterministic outputs).
    """
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[24:36] = b"".join(v.to_bytes(2, "big") for v in (2000, 1, 1, 0, 0, 0))
    return bytes(data)


def _quantise(srgb: np.ndarray, scale: float, dtype: type, rows: int = 256) -> np.ndarray:
    """``round(clip(srgb, 0, 1) * scale)`` as ``dtype``, a band of rows at a time (no full-size float temporaries)."""
    srgb = np.asarray(srgb)
    if srgb.ndim < 2:
        return (np.clip(srgb, 0.0, 1.0) * scale + 0.5).astype(dtype)
    out = np.empty(srgb.shape, dtype=dtype)
    for y in range(0, srgb.shape[0], rows):
        band = np.clip(srgb[y : y + rows], 0.0, 1.0)
        band *= scale
        band += 0.5
        out[y : y + rows] = band.astype(dtype)
    return out


def to_uint8(srgb: np.ndarray) -> np.ndarray:
    """sRGB float [0, 1] HxWx3 -> uint8 with rounding."""
    return _quantise(srgb, 255.0, np.uint8)


def to_uint16(srgb: np.ndarray) -> np.ndarray:
    """sRGB float [0, 1] HxWx3 -> uint16 with rounding."""
    return _quantise(srgb, 65535.0, np.uint16)


def encode_jpeg(srgb: np.ndarray, quality: int = 95, exif: bytes | None = None, icc: bool = True,
                dpi: tuple[float, float] | None = None) -> bytes:
    """Encode sRGB float HxWx3 as JPEG bytes with an embedded sRGB ICC profile and EXIF.

    ``dpi`` (x, y) in dots per inch goes into the JFIF density (None: Pillow's 1:1 aspect).
    """
    from PIL import Image

    im = Image.fromarray(to_uint8(srgb), "RGB")
    buf = io.BytesIO()
    kwargs: dict[str, object] = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    if icc:
        kwargs["icc_profile"] = srgb_icc_profile()
    if exif:
        kwargs["exif"] = exif
    if dpi:
        kwargs["dpi"] = (round(dpi[0]), round(dpi[1]))
    im.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def write_jpeg(path: str | Path, srgb: np.ndarray, quality: int = 95, exif: bytes | None = None) -> Path:
    """Write sRGB float HxWx3 as a JPEG (ICC + optional EXIF bytes), atomically."""
    data = encode_jpeg(srgb, quality=quality, exif=exif)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_png(path: str | Path, srgb: np.ndarray, bits: int = 8) -> Path:
    """Write sRGB float HxWx3 (or HxW) as an 8- or 16-bit PNG, atomically."""
    import cv2

    arr = to_uint16(srgb) if bits == 16 else to_uint8(srgb)
    if arr.ndim == 3:
        arr = arr[:, :, ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise InputError("PNG encoding failed", path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)


def save_tiff(path: str | Path, srgb: np.ndarray, icc: bool = True,
              tags: Sequence[tuple[int, str, int, Any, bool]] = (), bits: int = 16,
              dpi: tuple[float, float] | None = None) -> None:
    """Encode sRGB float HxWx3 as a 16-bit (or ``bits=8``) TIFF (sRGB profile) straight to ``path`` (not atomic).

    Uncompressed baseline TIFF: every reader takes it and ``exiftool -validate`` accepts it
    (Deflate is not baseline; on real finals it saved 8% at 16 bits, 47% at 8). ``tags`` are extra TIFF
    tags in tifffile's ``extratags`` form (code, dtype, count, value, writeonce); ``dpi`` (x, y)
    in dots per inch becomes XResolution/YResolution (unit: inch).
    """
    import tifffile

    extratags = [(34675, "B", None, srgb_icc_profile(), True)] if icc else []
    extratags += list(tags)
    arr = to_uint8(srgb) if bits == 8 else to_uint16(srgb)
    res: dict[str, Any] = {"resolution": dpi, "resolutionunit": "INCH"} if dpi else {}
    tifffile.imwrite(str(path), arr, photometric="rgb", extratags=extratags, **res)


def write_tiff16(path: str | Path, srgb: np.ndarray, icc: bool = True,
                 tags: Sequence[tuple[int, str, int, Any, bool]] = ()) -> Path:
    """Write sRGB float HxWx3 as a 16-bit TIFF with an embedded sRGB profile, atomically.

    ``tags``: extra TIFF tags, as for :func:`save_tiff`.
    """
    with atomic_path(path) as tmp:
        save_tiff(tmp, srgb, icc=icc, tags=tags)
    return Path(path)


def read_preview(path: str | Path, max_side: int = 512, raw_thumbnail: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
    """A small linear float32 HxWx3 preview (long edge <= ``max_side``) and the full (H, W).

    For grouping, labelling and alignment: RAW takes :func:`flambient.io.raw.read_raw_thumbnail`
    (mosaic binning, camera RGB; with ``raw_thumbnail=False`` RAW decodes fully, in the colour
    :func:`read_linear` gives, and shrinks: for training pairs), JPEG uses the decoder's DCT
    downscaling (draft mode) to at most 8x before an area shrink in linear light, other formats
    decode fully and shrink. Orientation is applied, so (H, W) is the displayed size
    :func:`read_linear` returns. Raises :class:`InputError` like :func:`read_linear`.
    """
    from .raw import read_raw_thumbnail, shrink

    p = Path(path)
    fmt = sniff_format(p)
    if fmt == "tiff" and not is_plain_tiff(p):
        fmt = "raw"
    if fmt == "raw" and raw_thumbnail:
        return read_raw_thumbnail(p, max_side)
    if fmt == "jpeg":
        return _read_jpeg_preview(p, max_side)
    img = read_linear(p)
    return shrink(img, max_side), (int(img.shape[0]), int(img.shape[1]))


def _read_jpeg_preview(p: Path, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    from PIL import Image, ImageOps

    from .raw import shrink

    _pillow_limit()
    try:
        with Image.open(p) as im:
            w, h = im.size
            check_image_size(w, h, p)
            orient = im.getexif().get(0x0112, 1)
            if orient in (5, 6, 7, 8):
                w, h = h, w
            im.draft("RGB", (max(1, w // 8), max(1, h // 8)) if max(w, h) // 8 >= max_side else (w, h))
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode != "RGB":
                im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as exc:
        raise InputError(f"corrupt or truncated image ({_reason(exc)})", p) from None
    return shrink(srgb_to_linear(arr), max_side), (int(h), int(w))

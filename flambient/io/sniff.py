"""Find a file's format from its first bytes, never from its extension.

Cameras and phones write JPEG data named ``.nef`` or ``.tif``; a RAW file renamed ``.jpg``
must still go to the RAW decoder. :func:`sniff_format` looks at magic numbers only.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

#: Formats :func:`sniff_format` can return.
FORMATS = ("jpeg", "png", "tiff", "exr", "raw")

# TIFF-based RAW formats (NEF, CR2, ARW, DNG, PEF, ...) start like a TIFF; they are told apart
# from plain TIFF by tags, which :func:`flambient.io.images.is_plain_tiff` checks.
_RAW_MAGIC: tuple[bytes, ...] = (
    b"FUJIFILMCCD-RAW",  # RAF
    b"\x00MRM",  # Minolta MRW
    b"IIRO",  # Olympus ORF (little-endian variant)
    b"IIRS",  # Olympus ORF
    b"MMOR",  # Olympus ORF big-endian
    b"IIU\x00",  # Panasonic RW2
    b"FOVb",  # Sigma X3F
    b"HEAPCCDR",  # Canon CRW at offset 6 is checked separately
)


def sniff_bytes(head: bytes) -> str | None:
    """Return the format of a file whose first bytes are ``head`` (>= 32 bytes), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\x76\x2f\x31\x01"):
        return "exr"
    if any(head.startswith(m) for m in _RAW_MAGIC):
        return "raw"
    if head[6:14] == b"HEAPCCDR":
        return "raw"  # Canon CRW
    if head[4:12] in (b"ftypcrx ", b"ftypcrx\x00") or head[4:8] == b"ftyp" and b"crx" in head[8:24]:
        return "raw"  # Canon CR3 (ISO base media file with brand 'crx ')
    if head[:4] == b"IIII" or head.startswith(b"IIRO"):
        return "raw"
    if head.startswith(b"II*\x00") or head.startswith(b"MM\x00*"):
        # Plain TIFF or a TIFF-based RAW; CR2 carries 'CR' at offset 8.
        if head[8:10] == b"CR":
            return "raw"
        return "tiff"
    if head.startswith(b"II\x2a\x00") or head.startswith(b"IIRS"):
        return "raw"
    return None


def sniff_format(path: str | Path) -> str:
    """Return one of :data:`FORMATS` for ``path`` from its content.

    Raises :class:`InputError` when the file is missing, empty, unreadable or of no known
    image format. A TIFF-based RAW (NEF, ARW, DNG, ...) comes back as ``"tiff"`` here; the
    image reader tells it from a plain TIFF by its tags.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        raise InputError("file not found", p) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", p) from None
    if not head:
        raise InputError("file is empty (0 bytes)", p, "re-copy it from the card")
    fmt = sniff_bytes(head.ljust(64, b"\x00"))
    if fmt is None:
        raise InputError("not an image: unknown file format", p, "expected RAW, JPEG, PNG, TIFF or EXR")
    return fmt

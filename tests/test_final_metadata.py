"""Finals carry the source's EXIF, IPTC and XMP and an sRGB ICC profile, as JPEG and TIFF (issues 13, 16)."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms

from flambient.cli import main
from flambient.config import load_preset, parse_preset
from flambient.io.exif import read_exif
from flambient.io.images import write_jpeg
from flambient.nets.registry import create_model, save_model
from flambient.process import ProcessOptions, process_shoot

from conftest import shared_file


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from flambient.synth import synth_shoot

    root = tmp_path_factory.mktemp("meta")
    shoot = root / "shoot"
    synth_shoot(shoot, sets=1, size=(160, 96), seed=11, fmt="dng")
    shutil.rmtree(shoot / "truth")
    torch.manual_seed(0)
    save_model(create_model("bilateral", width=8, hidden=8, grid_size=4, luma_bins=4), root / "m")
    finals = {}
    for name, preset in [("jpeg", load_preset("studio")),
                         ("tiff16", parse_preset({"output": {"format": "tiff16"}}, "archive"))]:
        s = process_shoot(shoot, ProcessOptions(preset=preset, model=str(root / "m"), devices="cpu",
                                                out=root / name, decode_jobs=1))
        assert s.exit_code == 0
        finals[name] = Path(s.results[0].final or "")
    finals["shoot"] = shoot
    return finals


def _source_times(shoot: Path) -> set[str]:
    return {read_exif(f).capture_time.strftime("%Y:%m:%d %H:%M:%S")  # type: ignore[union-attr]
            for f in shoot.iterdir() if f.suffix.lower() == ".dng"}


def _is_srgb(icc: bytes | None) -> bool:
    return bool(icc) and "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))


@pytest.mark.parametrize("fmt", ["jpeg", "tiff16"])
def test_final_keeps_camera_lens_time_and_resets_orientation(processed: dict[str, Path], fmt: str) -> None:
    final = processed[fmt]
    with Image.open(final) as im:
        exif = im.getexif()
        tags = {**dict(exif), **dict(exif.get_ifd(0x8769))}
        icc = im.info.get("icc_profile")
        if icc is None and fmt == "tiff16":
            icc = tifffile.TiffFile(final).pages[0].tags[34675].value
    assert _is_srgb(icc)
    assert tags.get(271) == "Flambient" and tags.get(272) == "SynthCam FF-24"  # camera
    assert tags.get(42036) == "Synth 14-24mm f/2.8"  # lens
    assert tags.get(36867) in _source_times(processed["shoot"])  # capture time of a source frame
    assert tags.get(274) == 1  # the pixels are upright: orientation reset
    assert tags.get(34855)  # ISO


def test_tiff_final_is_16_bit(processed: dict[str, Path]) -> None:
    arr = tifffile.imread(processed["tiff16"])
    assert arr.dtype == np.uint16 and arr.shape[2] == 3 and arr.std() > 0


# ----------------------------------------------------------------------------- full metadata (issue 16)

T0 = datetime(2026, 5, 1, 10, 11, 12)
#: What the reference (ambient) frame of the tagged shoot carries, as exiv2 keys -> text.
SOURCE_EXIF = {
    "Exif.Image.Make": "Nikon", "Exif.Image.Model": "Z 6II", "Exif.Image.Artist": "Ann Lee",
    "Exif.Image.Copyright": "(c) Ann Lee Studio", "Exif.Image.XResolution": "300/1",
    "Exif.Image.YResolution": "300/1", "Exif.Image.ResolutionUnit": "2", "Exif.Image.Orientation": "6",
    "Exif.Photo.LensMake": "Nikon", "Exif.Photo.LensModel": "NIKKOR Z 14-30mm f/4 S",
    "Exif.Photo.BodySerialNumber": "3002535", "Exif.Photo.LensSerialNumber": "20009519",
    "Exif.GPSInfo.GPSVersionID": "2 3 0 0", "Exif.GPSInfo.GPSLatitudeRef": "N",
    "Exif.GPSInfo.GPSLatitude": "48/1 51/1 24/1", "Exif.GPSInfo.GPSLongitudeRef": "E",
    "Exif.GPSInfo.GPSLongitude": "2/1 21/1 0/1",
}
KEYWORDS = ["kitchen", "listing 42"]
RIGHTS = "All rights reserved"


def _tagged_frame(path: Path, seed: int, exposure: float, flash: int, when: datetime, extra: bool) -> None:
    """A 64x48 (stored) JPEG frame with capture EXIF; ``extra`` adds the studio's metadata (SOURCE_EXIF...)."""
    import pyexiv2

    rng = np.random.default_rng(seed)
    img = np.clip(rng.random((48, 64, 3)) * 0.3 + np.linspace(0.2, 0.8, 64)[None, :, None], 0, 1)
    write_jpeg(path, img.astype(np.float32))
    exif = {"Exif.Photo.ExposureTime": f"1/{round(1 / exposure)}", "Exif.Photo.FNumber": "8/1",
            "Exif.Photo.ISOSpeedRatings": "400", "Exif.Photo.Flash": str(flash),
            "Exif.Photo.DateTimeOriginal": when.strftime("%Y:%m:%d %H:%M:%S"),
            "Exif.Image.Make": "Nikon", "Exif.Image.Model": "Z 6II", "Exif.Image.Orientation": "6"}
    img_md = pyexiv2.Image(str(path))
    try:
        img_md.modify_exif({**exif, **(SOURCE_EXIF if extra else {})})
        if extra:
            img_md.modify_iptc({"Iptc.Application2.Keywords": KEYWORDS})
            img_md.modify_xmp({"Xmp.dc.rights": {'lang="x-default"': RIGHTS}, "Xmp.xmp.Rating": "4",
                               "Xmp.exif.GPSLatitude": "48,51.4N", "Xmp.exif.GPSLongitude": "2,21.0E"})
    finally:
        img_md.close()


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Finals of a two-frame JPEG set (ambient reference with full metadata + flash frame)."""
    root = tmp_path_factory.mktemp("tagged")
    shoot = root / "shoot"
    shoot.mkdir()
    _tagged_frame(shoot / "room_0001.jpg", 1, 1 / 8, 0x10, T0, extra=True)  # ambient: flash off
    _tagged_frame(shoot / "room_0002.jpg", 2, 1 / 125, 0x09, T0 + timedelta(seconds=3), extra=False)  # flash
    torch.manual_seed(0)
    save_model(create_model("bilateral", width=8, hidden=8, grid_size=4, luma_bins=4), root / "m")
    finals: dict[str, Path] = {"shoot": shoot}
    for name, doc in [("jpeg", {}), ("tiff16", {"output": {"format": "tiff16"}}),
                      ("tiff8", {"output": {"format": "tiff8"}}),
                      ("jpeg_nogps", {"metadata": {"strip_gps": True}})]:
        s = process_shoot(shoot, ProcessOptions(preset=parse_preset(doc, name), model=str(root / "m"),
                                                devices="cpu", out=root / name, decode_jobs=1))
        assert s.exit_code == 0 and len(s.results) == 1, s.results
        finals[name] = Path(s.results[0].final or "")
    assert main(["process", str(shoot), "--model", str(root / "m"), "--devices", "cpu", "--out",
                 str(root / "cli_nogps"), "--strip-gps"]) == 0
    finals["cli_nogps"] = next((root / "cli_nogps").glob("*.jpg"))
    return finals


def _read(path: Path) -> tuple[dict, dict, dict]:
    import pyexiv2

    img = pyexiv2.Image(str(path))
    try:
        return img.read_exif(), img.read_iptc(), img.read_xmp()
    finally:
        img.close()


@pytest.mark.parametrize("fmt", ["jpeg", "tiff16", "tiff8"])
def test_final_carries_the_sources_exif_iptc_and_xmp(tagged: dict[str, Path], fmt: str) -> None:
    exif, iptc, xmp = _read(tagged[fmt])
    for key, val in SOURCE_EXIF.items():
        if key != "Exif.Image.Orientation":
            assert exif.get(key) == val, key
    assert iptc.get("Iptc.Application2.Keywords") == KEYWORDS
    assert xmp.get("Xmp.dc.rights") == {'lang="x-default"': RIGHTS} and xmp.get("Xmp.xmp.Rating") == "4"
    assert xmp.get("Xmp.exif.GPSLatitude") == "48,51.4N"
    assert exif["Exif.Photo.DateTimeOriginal"] == "2026:05:01 10:11:12"  # the reference frame's
    assert exif["Exif.Photo.Flash"] == "9"  # the set's flash frame fired (the reference's own says "off")
    assert exif["Exif.Image.Software"].startswith("flambient ")
    assert xmp.get("Xmp.xmpMM.History[1]/stEvt:action") == "derived"
    assert "preset " + fmt in xmp.get("Xmp.xmpMM.History[1]/stEvt:parameters", "")
    assert not [k for k in exif if k.startswith("Exif.Thumbnail.")]  # no thumbnail of the unedited frame


@pytest.mark.parametrize("fmt", ["jpeg", "tiff16", "tiff8"])
def test_orientation_size_and_density_match_the_pixels(tagged: dict[str, Path], fmt: str) -> None:
    final = tagged[fmt]
    exif, _, _ = _read(final)
    with Image.open(final) as im:
        size, dpi = im.size, im.info.get("dpi")
    # The source is stored 64x48 with Orientation 6: decoded upright (48x64), so the final says 1.
    assert size == (48, 64) and exif["Exif.Image.Orientation"] == "1"
    assert dpi is not None and tuple(round(float(v)) for v in dpi) == (300, 300)
    if fmt == "jpeg":
        assert (exif["Exif.Photo.PixelXDimension"], exif["Exif.Photo.PixelYDimension"]) == ("48", "64")
    else:
        arr = tifffile.imread(final)
        assert arr.shape == (64, 48, 3) and arr.dtype == (np.uint16 if fmt == "tiff16" else np.uint8)


@pytest.mark.parametrize("name", ["jpeg_nogps", "cli_nogps"])
def test_strip_gps_drops_location_from_exif_and_xmp(tagged: dict[str, Path], name: str) -> None:
    exif, iptc, xmp = _read(tagged[name])
    assert not [k for k in exif if k.startswith("Exif.GPSInfo.") or k == "Exif.Image.GPSTag"]
    assert not [k for k in xmp if "GPS" in k]
    assert exif["Exif.Image.Artist"] == "Ann Lee" and iptc["Iptc.Application2.Keywords"] == KEYWORDS  # the rest kept


def _exiftool_warnings(path: Path) -> list[str]:
    exe = shutil.which("exiftool")
    if exe is None:
        pytest.skip("exiftool not installed (Debian: apt-get install libimage-exiftool-perl)")
    r = subprocess.run([exe, "-validate", "-warning", "-a", "-s", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line.startswith("Warning")]


@pytest.mark.parametrize("fmt", ["jpeg", "tiff16", "tiff8"])
def test_exiftool_validate_finds_no_warnings(tagged: dict[str, Path], fmt: str) -> None:
    assert _exiftool_warnings(tagged[fmt]) == []


def test_real_nikon_set_keeps_its_metadata_and_validates(tmp_path: Path, tagged: dict[str, Path]) -> None:
    import os

    src = shared_file("flambient-brackets-small-davepeloso-prophoto", "set01")
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    for f in sorted(src.glob("*.jpg")):
        os.symlink(f, shoot / f.name)
    preset = parse_preset({"output": {"long_edge": 320}}, "small")
    s = process_shoot(shoot, ProcessOptions(preset=preset, model=str(tagged["shoot"].parent / "m"), devices="cpu",
                                            out=tmp_path / "out", decode_jobs=1))
    assert s.exit_code == 0, s.results
    final = Path(s.results[0].final or "")
    exif, iptc, _ = _read(final)
    ref, _, _ = _read(src / "mariposa-0001.jpg")
    for key in ("Exif.Image.Make", "Exif.Image.Model", "Exif.Photo.LensModel", "Exif.Photo.LensSerialNumber",
                "Exif.Photo.BodySerialNumber", "Exif.Photo.OffsetTimeOriginal", "Exif.Image.XResolution"):
        assert exif.get(key) == ref.get(key), key
    assert exif["Exif.Photo.Flash"] != ref["Exif.Photo.Flash"] and int(exif["Exif.Photo.Flash"]) & 1  # set has flash
    assert (exif["Exif.Photo.PixelXDimension"], exif["Exif.Photo.PixelYDimension"]) == ("320", "213")
    assert iptc.get("Iptc.Application2.DateCreated") == "2025-10-29"
    if shutil.which("exiftool"):  # the metadata checks above run without it
        assert _exiftool_warnings(final) == []


def test_unreadable_source_falls_back_to_ingest_fields_and_tiff_keeps_pixels(tmp_path: Path) -> None:
    from flambient.config import OutputSettings
    from flambient.io.exif import ExifInfo
    from flambient.io.images import to_uint16, write_exr
    from flambient.io.metadata import FinalMetadata
    from flambient.output import write_final

    src = tmp_path / "merged.exr"
    write_exr(src, np.full((8, 8, 3), 0.5, np.float32))
    info = ExifInfo(make="Canon", model="EOS R5", lens="RF15-35mm F2.8 L IS USM", iso=200.0,
                    capture_time=T0, exposure_time=1 / 60, f_number=8.0)
    srgb = np.random.default_rng(3).random((20, 30, 3)).astype(np.float32)
    final = write_final(tmp_path / "f.tif", srgb, OutputSettings(format="tiff16"),
                        FinalMetadata(source=src, fallback=info, software="flambient test"))
    exif, _, _ = _read(final)
    assert (exif["Exif.Image.Make"], exif["Exif.Image.Model"]) == ("Canon", "EOS R5")
    assert exif["Exif.Photo.LensModel"] == "RF15-35mm F2.8 L IS USM" and exif["Exif.Photo.ISOSpeedRatings"] == "200"
    assert exif["Exif.Photo.DateTimeOriginal"] == "2026:05:01 10:11:12" and exif["Exif.Image.Orientation"] == "1"
    assert np.array_equal(tifffile.imread(final), to_uint16(srgb))  # exiv2's rewrite kept every pixel
    assert _is_srgb(tifffile.TiffFile(final).pages[0].tags[34675].value)


def test_tiff_source_keeps_its_orientation(tmp_path: Path) -> None:
    """A TIFF reader returns pixels as stored, so the final keeps the source's Orientation."""
    import pyexiv2

    from flambient.io.images import write_tiff16
    from flambient.io.metadata import FinalMetadata, prepare

    src = tmp_path / "scan.tif"
    write_tiff16(src, np.full((6, 4, 3), 0.5, np.float32))
    img = pyexiv2.Image(str(src))
    img.modify_exif({"Exif.Image.Orientation": "8"})
    img.close()
    carrier = prepare(FinalMetadata(source=src), (4, 6), jpeg=True).carrier
    assert carrier.read_exif()["Exif.Image.Orientation"] == "8"


def test_preset_metadata_section_is_validated() -> None:
    from flambient.errors import ConfigError

    assert parse_preset({"metadata": {"strip_gps": True}}, "x").metadata.strip_gps is True
    assert parse_preset({}, "x").to_dict()["metadata"] == {"strip_gps": False}
    with pytest.raises(ConfigError, match="strip_gps"):
        parse_preset({"metadata": {"strip_gps": "yes"}}, "x")
    with pytest.raises(ConfigError, match="strip_location"):
        parse_preset({"metadata": {"strip_location": True}}, "x")


@pytest.mark.parametrize("fmt", ["jpeg", "tiff16"])
def test_exiftool_validate_dng_source_finals(processed: dict[str, Path], fmt: str) -> None:
    assert _exiftool_warnings(processed[fmt]) == []


def test_malformed_source_xmp_is_left_out_and_the_rest_carried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flambient.config import OutputSettings
    from flambient.io.metadata import FinalMetadata
    from flambient.output import write_final

    src = tmp_path / "src.jpg"
    _tagged_frame(src, 5, 1 / 8, 0x10, T0, extra=False)
    data = src.read_bytes()
    payload = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF broken"
    src.write_bytes(data[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:])
    final = write_final(tmp_path / "f.jpg", np.full((8, 8, 3), 0.5, np.float32), OutputSettings(),
                        FinalMetadata(source=src, software="flambient test"))
    exif, _, xmp = _read(final)
    assert exif["Exif.Image.Model"] == "Z 6II" and exif["Exif.Image.Software"] == "flambient test"
    assert xmp.get("Xmp.xmpMM.History[1]/stEvt:action") == "derived"


def test_turning_strip_gps_on_redoes_the_final(tagged: dict[str, Path], tmp_path: Path) -> None:
    shoot, model = tagged["shoot"], str(tagged["shoot"].parent / "m")

    def run(doc: dict) -> str:
        s = process_shoot(shoot, ProcessOptions(preset=parse_preset(doc, "p"), model=model, devices="cpu",
                                                out=tmp_path, decode_jobs=1))
        return s.results[0].status

    assert run({}) == "done" and run({}) == "skipped"
    assert run({"metadata": {"strip_gps": True}}) == "done"  # part of the fingerprint: not skipped
    exif, _, xmp = _read(next(tmp_path.glob("*.jpg")))
    assert not [k for k in exif if "GPS" in k] and not [k for k in xmp if "GPS" in k]

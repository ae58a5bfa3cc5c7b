"""`flambient process`: outputs, skip/force/dry-run, shards, failures, summary, EXIF and ICC."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from flambient.cli import main
from flambient.config import load_preset, parse_preset
from flambient.errors import InputError
from flambient.process import ProcessOptions, Stages, parse_shard, process_shoot

from conftest import latest_summary, make_tiny_shoot, sidecar_file

N_SETS = 3


@pytest.fixture(scope="module")
def shoot_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic DNG shoot (3 sets), made once per module."""
    return make_tiny_shoot(tmp_path_factory, "shoot_src", N_SETS, seed=3, fmt="dng")


def _opts(model_dir: Path, **kw) -> ProcessOptions:  # type: ignore[no-untyped-def]
    preset = kw.pop("preset", None) or load_preset("studio")
    return ProcessOptions(preset=preset, model=str(model_dir), devices="cpu", decode_jobs=1, **kw)


def _summary(shoot: Path) -> dict:
    return latest_summary(shoot / "final")


def test_process_skip_force_dry_run(shoot: Path, model_dir: Path) -> None:
    s1 = process_shoot(shoot, _opts(model_dir))
    assert s1.exit_code == 0 and [r.status for r in s1.results] == ["done"] * N_SETS
    finals = sorted((shoot / "final").glob("*.jpg"))
    assert len(finals) == N_SETS
    doc = _summary(shoot)
    assert doc["counts"] == {"done": N_SETS} and doc["exit_code"] == 0
    assert all(set(s["timings"]) >= {"decode", "context", "apply", "encode", "total"} for s in doc["sets"])
    assert (shoot / "final" / ".flambient" / "process.log").read_text().count(" done") == N_SETS
    mtimes = {f: f.stat().st_mtime_ns for f in finals}

    s2 = process_shoot(shoot, _opts(model_dir))
    assert [r.status for r in s2.results] == ["skipped"] * N_SETS and s2.exit_code == 0
    assert {f: f.stat().st_mtime_ns for f in finals} == mtimes

    dry = process_shoot(shoot, _opts(model_dir, force=True, dry_run=True))
    assert [r.status for r in dry.results] == ["would-process"] * N_SETS
    assert {f: f.stat().st_mtime_ns for f in finals} == mtimes
    assert _summary(shoot)["counts"] == {"skipped": N_SETS}  # a dry run writes nothing

    s3 = process_shoot(shoot, _opts(model_dir, force=True))
    assert [r.status for r in s3.results] == ["done"] * N_SETS

    # A changed preset setting or a changed input invalidates the fingerprint.
    warm = parse_preset({"edit": {"white_balance": 5000}}, "studio")
    assert [r.status for r in process_shoot(shoot, _opts(model_dir, preset=warm)).results] == ["done"] * N_SETS
    assert [r.status for r in process_shoot(shoot, _opts(model_dir, preset=warm)).results] == ["skipped"] * N_SETS


def test_final_has_exif_icc_and_sidecar(shoot: Path, model_dir: Path) -> None:
    s = process_shoot(shoot, _opts(model_dir))
    final = Path(s.results[0].final or "")
    with Image.open(final) as im:
        assert im.format == "JPEG" and im.size == (192, 128)
        icc = im.info.get("icc_profile")
        exif = im.getexif()
        sub = exif.get_ifd(0x8769)
    from PIL import ImageCms
    import io

    assert icc and "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    assert exif.get(271) == "Flambient" and exif.get(274) == 1
    assert sub.get(34855) == 400 and sub.get(33434) is not None  # ISO and exposure time of the reference
    side = json.loads(sidecar_file(final).read_text())
    assert side["model"]["family"] == "bilateral" and side["preset"]["name"] == "studio"
    import hashlib

    for inp in side["inputs"]:
        assert inp["sha256"] == hashlib.sha256((shoot / inp["path"]).read_bytes()).hexdigest()
    assert set(side["timings"]) >= {"decode", "context", "apply", "encode"} and side["fingerprint"]


def test_shards_split_the_sets(shoot: Path, model_dir: Path) -> None:
    a = process_shoot(shoot, _opts(model_dir, shard=(1, 2)))
    b = process_shoot(shoot, _opts(model_dir, shard=(2, 2)))
    done_a = {r.name for r in a.results if r.status == "done"}
    done_b = {r.name for r in b.results if r.status == "done"}
    assert done_a and done_b and not (done_a & done_b) and len(done_a | done_b) == N_SETS
    assert parse_shard("2/3") == (2, 3)


def test_bad_set_fails_alone(shoot: Path, model_dir: Path) -> None:
    bad = sorted(p.stem for p in shoot.glob("*.dng"))[0]

    class Flaky(Stages):
        def decode(self, job):  # type: ignore[no-untyped-def]
            if job.bset.name == bad:
                raise InputError("truncated RAW file", shoot / f"{bad}.dng")
            return super().decode(job)

    s = process_shoot(shoot, _opts(model_dir), stages=Flaky)
    st = {r.name: r for r in s.results}
    assert st[bad].status == "failed" and "truncated RAW" in (st[bad].error or "")
    assert sum(r.status == "done" for r in s.results) == N_SETS - 1 and s.exit_code == 1
    assert not (shoot / "final" / f"{bad}.jpg").exists()
    assert not list((shoot / "final" / ".flambient" / "locks").glob("*.lock"))  # every lock released


def test_corrupt_frame_cli_exit_1(shoot: Path, model_dir: Path) -> None:
    src = sorted(shoot.glob("*.dng"))[0]
    data = src.read_bytes()
    (shoot / "ZZZ_broken.dng").write_bytes(data[: len(data) // 3])
    rc = main(["process", str(shoot), "--model", str(model_dir), "--devices", "cpu"])
    assert rc == 1
    doc = _summary(shoot)
    failed = [s for s in doc["sets"] if s["status"] == "failed"]
    assert len(failed) == 1 and "ZZZ_broken" in failed[0]["name"] and failed[0]["error"]
    assert doc["counts"]["done"] >= N_SETS - 1


def test_cli_usage_errors_exit_2(shoot: Path, model_dir: Path) -> None:
    assert main(["process", str(shoot), "--preset", "nope"]) == 2
    assert main(["process", str(shoot), "--model", str(model_dir), "--shard", "3/2"]) == 2
    assert main(["process", str(shoot / "missing"), "--model", str(model_dir)]) == 2
    assert main(["process", str(shoot), "--model", str(shoot / "no-model")]) == 2
    assert not (shoot / "final" / ".flambient" / "summaries" / "latest.json").exists()


def test_tiff16_output_and_naming(shoot: Path, model_dir: Path, tmp_path: Path) -> None:
    preset = parse_preset({"output": {"format": "tiff16", "naming": "{set}_{preset}", "long_edge": 100,
                                      "sharpen": 0.5}}, "archive")
    out = tmp_path / "out"
    s = process_shoot(shoot, _opts(model_dir, preset=preset, out=out))
    assert s.exit_code == 0
    import tifffile

    files = sorted(out.glob("*_archive.tif"))
    assert len(files) == N_SETS
    arr = tifffile.imread(files[0])
    assert arr.dtype == np.uint16 and max(arr.shape[:2]) == 100 and arr.std() > 0


@pytest.mark.slow
def test_demo_makes_and_processes_a_shoot(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    """`flambient demo DIR` on an empty folder: synthetic shoot -> finals (a tmp 'default' model)."""
    models = tmp_path / "models"
    shutil.copytree(model_dir, models / "default")
    monkeypatch.setenv("FLAMBIENT_MODELS", str(models))
    demo = tmp_path / "demo"
    assert main(["demo", str(demo), "--sets", "2"]) == 0
    assert "WARNING" not in capfd.readouterr().err  # a new user's first run warns of nothing (not its own truth/)
    finals = sorted((demo / "final").glob("*.jpg"))
    assert len(finals) == 2 + 3  # two synthetic bracket sets and the three shipped real photographs
    assert sum(f.name.startswith("photo-") for f in finals) == 3
    side = json.loads(sidecar_file(finals[0]).read_text())
    assert side["model"]["name"] == "default" and side["preset"]["name"] == "studio"
    manifest = yaml.safe_load((demo / ".flambient" / "manifest.yaml").read_text())
    assert manifest["warnings"] == []  # the demo's own shoot groups on confirmed evidence: no warning
    assert main(["demo", str(demo), "--sets", "2"]) == 0  # second run: everything skipped
    assert _summary(demo)["counts"] == {"skipped": 5}


def test_single_images_become_one_frame_sets(tmp_path: Path, model_dir: Path) -> None:
    """A folder of merged single exposures (no EXIF): each image is its own set and gets a final."""
    folder = tmp_path / "singles"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(90, 120), (100, 80)]):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx / w, yy / h, np.full((h, w), 0.3 + 0.4 * i)], -1) * 200 + rng.random((h, w, 3)) * 40
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"room{i}.jpg", quality=95)
    s = process_shoot(folder, _opts(model_dir))
    assert s.exit_code == 0 and len(s.results) == 2 and all(r.status == "done" for r in s.results)
    for r, size in zip(s.results, [(120, 90), (80, 100)]):
        with Image.open(r.final or "") as im:
            assert im.size == size and im.info.get("icc_profile")


def test_devices_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from flambient import devices
    from flambient.errors import DeviceError

    assert devices.parse_devices("auto") == ("auto", [])
    assert devices.parse_devices("cuda:0,1") == ("cuda", [0, 1])
    assert devices.parse_devices("1,0") == ("cuda", [0, 1])
    with pytest.raises(DeviceError):
        devices.parse_devices("tpu")
    monkeypatch.setattr(devices, "discover_devices", lambda: [devices.CPU])
    assert devices.resolve_devices("cpu") == [devices.CPU]
    assert devices.resolve_devices("auto") == [devices.CPU]  # only auto falls back to the CPU
    for spec in ("cuda", "cuda:0"):  # an explicit GPU without one is an error (issue 16)
        with pytest.raises(DeviceError, match="no usable CUDA GPU"):
            devices.resolve_devices(spec)
    two = [devices.Device("cuda:0", "A"), devices.Device("cuda:1", "B"), devices.CPU]
    monkeypatch.setattr(devices, "discover_devices", lambda: two)
    assert [d.name for d in devices.resolve_devices("auto")] == ["cuda:0", "cuda:1"]
    assert [d.name for d in devices.resolve_devices("cuda:1")] == ["cuda:1"]
    with pytest.raises(DeviceError, match="cuda:2"):
        devices.resolve_devices("cuda:2")


def test_onnx_backend_picks_its_own_provider_when_torch_sees_no_gpu(tmp_path: Path) -> None:
    """CPU-only torch beside onnxruntime-gpu: `--devices auto` must not pin onnx to the CPU."""
    from flambient.devices import Device, parse_devices
    from flambient.inference import backend_class

    cpu = [Device("cpu", "CPU")]
    preset = load_preset("studio")

    def device_for(backend: str, devices: str, model: str | None = None) -> str:
        cls = backend_class(model or preset.model, backend)
        return cls.device_for(cpu[0], cpu, parse_devices(devices)[0])

    assert device_for("onnx", "auto") == "auto"
    assert device_for("torch", "auto", model=str(tmp_path / "m.onnx")) == "auto"
    assert device_for("onnx", "cpu") == "cpu"
    assert device_for("torch", "auto") == "cpu"

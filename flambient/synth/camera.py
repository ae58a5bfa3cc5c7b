"""The synthetic camera: exposure plans, sensor noise, Bayer mosaic, white balance and EXIF.

Scene radiance (linear sRGB, from :mod:`flambient.synth.lighting`) becomes a frame value by
``value = radiance * C * H`` with the exposure ``H = t * ISO/100 / N**2`` (shutter ``t`` in
seconds, aperture ``N``) and a per-scene constant ``C`` fixed by metering the ambient frame.
1.0 is the sensor's white level.

Sensor: camera RGB is linear sRGB scaled per channel by :data:`SENSITIVITY` (green most
sensitive, as in real Bayer sensors), 14-bit counts with :data:`BLACK` / :data:`WHITE`
levels, photon shot noise (full well ``FULL_WELL`` electrons at ISO 100) and read noise that
grows with ISO. White balance is fixed for the whole shoot at :data:`WB_KELVIN` (flash
daylight), as photographers do: the flash is neutral, tungsten renders warm, window light cool.

"Decoded" values, the ones ``ingest`` sees after rawpy (or after linearising a JPEG), are
``value * WB_GAIN`` clipped where the sensor clipped; all truth quantities are expressed in
these decoded units, normalised to the set's reference ambient exposure (see
:mod:`flambient.stack`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from ..colour import XYZ_TO_RGB, cct_to_linear_rgb

SENSITIVITY = np.array([0.52, 1.0, 0.70], np.float32)
BLACK, WHITE = 512, 16383
FULL_WELL = 40000.0
WB_KELVIN = 5500.0
_wb = cct_to_linear_rgb(WB_KELVIN)
#: Per-channel gain from scene linear sRGB to decoded linear sRGB (flash light -> neutral).
WB_GAIN = (_wb[1] / _wb).astype(np.float32, copy=False)
#: ColorMatrix1 (XYZ D65 -> camera RGB) written into the DNGs.
COLOR_MATRIX = (np.diag(SENSITIVITY.astype(np.float64)) @ XYZ_TO_RGB)
#: AsShotNeutral: camera RGB of the white-balance light, max 1.
AS_SHOT_NEUTRAL = (SENSITIVITY * _wb) / float(np.max(SENSITIVITY * _wb))
MAKE, MODEL = "Flambient", "SynthCam FF-24"
SENSOR_WIDTH_MM = 36.0

#: The nominal 1/3-stop shutter speeds cameras write into EXIF (seconds), 1/8000 .. 4 s.
SHUTTERS = [1 / d for d in (8000, 6400, 5000, 4000, 3200, 2500, 2000, 1600, 1250, 1000, 800, 640, 500, 400,
                            320, 250, 200, 160, 125, 100, 80, 60, 50, 40, 30, 25, 20, 15, 13, 10, 8, 6, 5, 4)]
SHUTTERS += [0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0, 2.5, 3.2, 4.0]


def snap_shutter(t: float) -> float:
    """The nearest nominal 1/3-stop shutter speed to ``t`` seconds (clamped to 1/8000..4 s)."""
    return min(SHUTTERS, key=lambda s: abs(math.log2(s) - math.log2(max(t, 1e-6))))


@dataclass
class FramePlan:
    """One frame of a set: its role, camera settings, capture time and flash pop."""

    role: str  # "ambient" | "flash" | "window"
    shutter: float
    iso: int
    f_number: float
    bias: float
    flash: int  # index into the scene's flash pops, -1 = flash did not fire
    time: datetime
    focal_length: float

    @property
    def exposure(self) -> float:
        """``H = t * ISO/100 / N**2``."""
        return self.shutter * self.iso / 100.0 / self.f_number**2

    def exif(self) -> dict:
        """The EXIF dict for :mod:`flambient.io.exif_write`."""
        return {
            "ExposureTime": self.shutter, "FNumber": self.f_number, "ISO": self.iso,
            "DateTimeOriginal": self.time, "Flash": 0x0009 if self.flash >= 0 else 0x0010,
            "FocalLength": self.focal_length, "ExposureBiasValue": self.bias, "ExposureProgram": 1,
            "LensModel": "Synth 14-24mm f/2.8",
        }


def focal_length(fov_deg: float) -> float:
    """Full-frame focal length (mm, 0.1 mm steps) giving horizontal field of view ``fov_deg``."""
    return round(SENSOR_WIDTH_MM / (2 * math.tan(math.radians(fov_deg) / 2)), 1)


def plan_set(rng: np.random.Generator, start: datetime, n_flash: int, window: bool, fov: float,
             ambient_median: float, exterior_median: float) -> tuple[list[FramePlan], float, float]:
    """Camera settings and times of one set; returns ``(frames, C, flash_to_ambient)``.

    ``ambient_median``/``exterior_median`` are the median scene luminances of the interior and
    of the exterior seen through the windows. The ambient frame (1/10-1/4 s, ISO 400, f/7.1,
    +2/3..+4/3 EV) is metered so its interior median lands at ``0.18 * 2**bias``; that fixes
    ``C``. Flash frames: 1/100-1/160 s, ISO 100-250, f/8, flash-lit interior median 0.4-2.3 EV
    under the ambient frame (``flash_to_ambient`` is the flash/ambient scene-light ratio that
    achieves it). Window pull: ISO 100, f/8, no flash, exterior median near 0.45 within 2.3-4.7 EV under the
    ambient frame.
    """
    focal = focal_length(fov)
    bias = float(rng.choice([2 / 3, 1.0, 1.0, 4 / 3]))
    t_a = float(rng.choice([1 / 4, 1 / 5, 1 / 6, 1 / 8, 1 / 10]))
    amb = FramePlan("ambient", t_a, 400, 7.1, bias, -1, start, focal)
    c = 0.18 * 2**bias / max(ambient_median, 1e-12) / amb.exposure
    frames = [amb]
    t = start
    f_under = float(rng.uniform(-2.3, -0.4))  # flash frame interior vs ambient frame, EV
    flash_to_ambient = 0.0
    for k in range(n_flash):
        t = t + timedelta(seconds=float(rng.uniform(6, 35) if k == 0 else rng.uniform(3, 12)))
        fp = FramePlan("flash", float(rng.choice([1 / 100, 1 / 125, 1 / 160])),
                       int(rng.choice([100, 125, 160, 200, 250])), 8.0, 0.0, k, t, focal)
        frames.append(fp)
        if k == 0:
            flash_to_ambient = 2**f_under * amb.exposure / fp.exposure
    if window and exterior_median > 0:
        t = t + timedelta(seconds=float(rng.uniform(4, 20)))
        # exterior median near 0.45, but a pull 2.3-4.7 EV under the ambient frame, as shot in practice
        tw = 0.45 / (exterior_median * c) * 8.0**2  # H = t * 100/100 / 8**2
        rel = math.log2(tw / 64.0 / amb.exposure)
        tw = snap_shutter(tw * 2 ** (float(np.clip(rel, -4.7, -2.3)) - rel))
        wp = FramePlan("window", tw, 100, 8.0, 0.0, -1, t, focal)
        rel = math.log2(wp.exposure / amb.exposure)
        wp.bias = float(np.clip(round((rel + bias) * 3) / 3, -5.0, 0.0))
        frames.append(wp)
    for f in frames:
        f.time = f.time.replace(microsecond=int(rng.integers(0, 1000)) * 1000)
    return frames, c, flash_to_ambient


def shot_noise_sigma(value: np.ndarray, iso: int) -> np.ndarray:
    """Noise standard deviation (fraction of white) of sensor ``value`` at ``iso``."""
    gain = (iso / 100.0) / FULL_WELL
    read = 2.5e-4 * (iso / 100.0) ** 0.7
    return np.sqrt(np.maximum(value, 0) * gain + read * read).astype(np.float32, copy=False)


def expose(scene_rgb: np.ndarray, scale: float, iso: int, rng: np.random.Generator | None) -> np.ndarray:
    """Decoded linear RGB of a frame: scene radiance x ``scale`` through the sensor (noise, clip).

    Used for JPEG frames and training pairs (per-channel noise on full RGB); DNG frames use
    :func:`mosaic` instead, so the noise sits on the Bayer samples.
    """
    cam = scene_rgb * np.float32(scale) * SENSITIVITY
    if rng is not None:
        cam = cam + rng.standard_normal(cam.shape, dtype=np.float32) * shot_noise_sigma(cam, iso)
    cam = np.clip(cam, 0.0, 1.0)
    return (cam / SENSITIVITY * WB_GAIN).astype(np.float32, copy=False)


def mosaic(scene_rgb: np.ndarray, scale: float, iso: int, rng: np.random.Generator) -> np.ndarray:
    """RGGB uint16 CFA (2h x 2w) from an h x w x 3 scene render: one RGB sample per Bayer quad.

    Each quad's four photosites see the same scene colour (an anti-aliasing filter's blur) and
    get independent shot and read noise, black level and clipping at the white level.
    """
    h, w = scene_rgb.shape[:2]
    cam = scene_rgb * np.float32(scale) * SENSITIVITY
    cfa = np.empty((2 * h, 2 * w), np.float32)
    cfa[0::2, 0::2] = cam[:, :, 0]
    cfa[0::2, 1::2] = cam[:, :, 1]
    cfa[1::2, 0::2] = cam[:, :, 1]
    cfa[1::2, 1::2] = cam[:, :, 2]
    cfa += rng.standard_normal(cfa.shape, dtype=np.float32) * shot_noise_sigma(cfa, iso)
    span = np.float32(WHITE - BLACK)
    out = np.clip(cfa * span + np.float32(BLACK + 0.5), 0, WHITE)
    return out.astype(np.uint16)

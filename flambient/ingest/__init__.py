"""Shoot folder -> bracket sets: the manifest, the frame cache and the model input stacks.

``ingest_shoot(SHOOT)`` reads every image file directly in ``SHOOT`` (content decides the
format; with ``recursive`` also in sub-folders, never in folders flambient wrote), reads EXIF,
makes a small linear preview of each frame in parallel, groups frames into bracket sets,
labels roles and exposures, registers handheld frames, and writes
``SHOOT/.flambient/manifest.yaml``. Nothing else in ``SHOOT`` is touched. With ``cache`` it
also writes the frames each set's model stack uses, exposure-normalised and aligned, as
half-float OpenEXR under ``SHOOT/.flambient/cache/<set>/``.

The modules, one job each:

- :mod:`.scan`: which files are frames (and which folders flambient wrote), per-file analysis;
- :mod:`.manifest`: the :class:`Manifest` record, its YAML reader and writer, freshness;
- :mod:`.cache`: full-resolution decoding of a set's frames and the EXR frame cache;
- :mod:`.shoot`: :func:`ingest_shoot`, grouping, camera checks and alignment;
- the 13-channel stack itself is built only in :mod:`flambient.stack`.

Manifest (YAML)::

    format: flambient-manifest
    version: 2
    config: {...GroupingConfig...}
    sets:
      - name: mariposa-0001          # from the first frame's stem; filesystem-safe, unique
        reference: 0                 # index of the reference ambient frame
        handheld: false
        frames:
          - {path: mariposa-0001.jpg, role: ambient, ev: 0.0, ev_source: exif, role_source: exif,
             format: jpeg, width: 1280, height: 852, size: 302337, mtime: 1700000000.0,
             capture_time: '2025-10-29T12:31:41.070000-07:00', exposure_time: 0.1667,
             f_number: 7.1, iso: 400, exposure_bias: 1.0, flash_fired: false, make: ...,
             model: ..., lens: ..., focal_length: 15.0, orientation: 1, align: null}
    errors:   [{path: bad.nef, error: "truncated RAW file: ...", size: ..., mtime: ...}]
    grouping: [{path: mariposa-0002.jpg, set: mariposa-0001, joined: true, sure: true,
                reason: similar pictures, pause_s: 49.4, similarity: 0.711}]   # one per frame
    warnings: [{path: x.nef, warning: "content is JPEG ..."}]
    recursive: false                 # how SHOOT was scanned (absent in old manifests: false)
    exclude: [web]                   # folders left out besides flambient's own (process --out)
    files: {mariposa-0001.jpg: [302337, 1700000000.0], ...}   # every scanned file: size, mtime

``path`` is relative to SHOOT; ``ev`` is the frame's exposure relative to the reference
(normalise with ``frame * 2**-ev``); ``align`` is the registration onto the reference frame
(matrix in full-resolution pixels, shift, rotation, residual, whether it is applied).
"""

from __future__ import annotations

from .cache import cache_dir, load_frame, load_set_parts, load_set_stack, write_cache
from .manifest import (MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, fresh_manifest, load_manifest,
                       manifest_is_fresh, manifest_path, set_input_files, write_manifest)
from .scan import STATE_DIR, analyse_file, is_output_folder, scan_shoot
from .shoot import IngestProgress, align_set, current_manifest, ingest_shoot

__all__ = [
    "MANIFEST_FORMAT", "MANIFEST_VERSION", "STATE_DIR", "IngestProgress", "Manifest", "align_set", "analyse_file",
    "cache_dir", "current_manifest", "fresh_manifest", "ingest_shoot", "is_output_folder", "load_frame", "load_manifest",
    "load_set_parts", "load_set_stack", "manifest_is_fresh", "manifest_path", "scan_shoot", "set_input_files",
    "write_cache", "write_manifest",
]

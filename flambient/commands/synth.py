"""``flambient synth``: synthetic shoots (or training pairs) with ground-truth finals."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._command import command
from ._options import FrameFormat, Style, jobs_option, out_option


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""

    @command(app, "synth")
    def synth_cmd(
        out_arg: Optional[Path] = typer.Argument(None, metavar="[OUT]", help="Same as --out."),
        out: Optional[Path] = out_option(None, "Output folder (a shoot, or a dataset with --pairs)."),
        sets: int = typer.Option(3, "--sets", "-n", min=1, help="Number of bracket sets (or pairs)."),
        size: Optional[str] = typer.Option(None, "--size", help="Frame size WIDTHxHEIGHT (default 1536x1024; "
                                           "384x256 with --pairs)."),
        megapixels: Optional[float] = typer.Option(None, "--megapixels", help="Frame size in megapixels (3:2)."),
        seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same shoot."),
        frame_format: FrameFormat = typer.Option(FrameFormat.dng, "--format", help="Frame format."),
        house_style: Style = typer.Option(Style.studio, "--style", help="House style of the finals."),
        from_dir: Optional[Path] = typer.Option(None, "--from", help="Folder of edited finals to re-light into "
                                                "ambient/flash frames (the finals become the truth)."),
        pairs: bool = typer.Option(False, "--pairs", help="Write a training dataset instead of a shoot."),
        camera_awb: bool = typer.Option(False, "--camera-awb", help="With --from: the camera's auto white balance "
                                        "takes 50-100 % of the ambient light's cast out of each ambient frame "
                                        "(as on JPEG shoots); default: the raw cast of a fixed 5500 K balance."),
        flat_ambient: bool = typer.Option(False, "--flat-ambient", help="With --from: the ambient light is "
                                          "flatter than the final (its log contrast times 0.5-0.85, as measured "
                                          "on real ambient frames); default: the final's own contrast."),
        window_luma: Optional[float] = typer.Option(None, "--window-luma", min=0.0, max=1.0,
                                                    help="With --from: sRGB luminance above which a large region "
                                                    "of a final counts as a window (blown out in the ambient "
                                                    "frame); default 0.75, which also takes white walls."),
        metered: bool = typer.Option(False, "--metered", help="With --from: each ambient frame is exposed from "
                                     "the final (its interior median 0.2-0.9 EV over the final's median), as a "
                                     "camera metering the room would; default: from the re-lit light alone, "
                                     "which leaves the final about a stop under its ambient frame."),
        jobs: int = jobs_option(2, "Render threads (0 = all cores)."),
    ) -> None:
        """Render synthetic bracket shoots: frames like a camera's, plus truth/ (finals, masks, sets.yaml)."""
        from rich.progress import Progress

        from ..errors import InputError
        from ..log import console
        from ..synth.shoot import parse_size, synth_pairs, synth_shoot
        from ._out import note, show_progress

        import os

        out = _one_out(out_arg, out)
        for flag, on in (("--camera-awb", camera_awb), ("--flat-ambient", flat_ambient),
                         ("--window-luma", window_luma is not None), ("--metered", metered)):
            if on and from_dir is None:
                raise InputError(f"{flag} re-lights finals: it needs --from", out,
                                 f"add --from FOLDER_OF_FINALS, or leave {flag} out")
        workers = jobs or os.cpu_count() or 1
        fmt, style = frame_format.value, house_style.value
        default = (384, 256) if pairs else (1536, 1024)
        wh = parse_size(size, megapixels, default)
        with Progress(console=console, transient=True, disable=not show_progress()) as bar:
            task = bar.add_task("synth", total=sets)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            if from_dir is not None:
                from ..synth.from_finals import synth_from_finals

                doc = synth_from_finals(from_dir, out, size=wh if (size or megapixels or pairs) else None, seed=seed,
                                        fmt=fmt, pairs=pairs, limit=None, progress=progress, camera_awb=camera_awb,
                                        flat_ambient=flat_ambient, metered=metered,
                                        **({} if window_luma is None else
                                                                      {"window_luma": window_luma}))
                note(f"re-lit {len(doc['sets'])} finals from {from_dir} into {out}")
                if doc["skipped"]:
                    console.print(f"[red]{len(doc['skipped'])} finals could not be read[/]")
                    raise typer.Exit(1)
                return
            if pairs:
                index = synth_pairs(out, pairs=sets, size=wh, seed=seed, style=style, workers=workers,
                                    progress=progress)
                note(f"wrote {sets} pairs ({wh[0]}x{wh[1]}, style {style}) -> {index}")
                return
            doc = synth_shoot(out, sets=sets, size=wh, seed=seed, fmt=fmt, style=style, workers=workers,
                              progress=progress)
        frames = sum(len(s["frames"]) for s in doc["sets"])
        note(f"wrote {frames} frames in {len(doc['sets'])} sets ({wh[0]}x{wh[1]} {fmt}, style {style}) "
             f"-> {out}; truth in {out / 'truth'}")


def _one_out(positional: Optional[Path], option: Optional[Path]) -> Path:
    """The output folder from ``synth OUT`` or ``synth --out OUT`` (one of them, or both the same)."""
    from ..errors import InputError

    if positional is not None and option is not None and positional != option:
        raise InputError(f"two output folders: {positional} and --out {option}", hint="give one")
    out = option if option is not None else positional
    if out is None:
        raise InputError("missing output folder", hint="flambient synth --out ./synthetic")
    return out

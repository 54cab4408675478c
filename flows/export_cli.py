"""`story export` and `story proxy`: a finished render handed to editorial.

`story export RENDER --format edl --format fcp_xml ...` writes the cut through OpenTimelineIO's
adapter plug-ins (OTIO, OTIOZ, CMX 3600 EDL, FCP 7 XML, AAF) into `<render>/editorial/`;
`story proxy RENDER --width 1024` writes a review copy with burn-ins there. RENDER is a render
id, a unique prefix of one, or a render folder. Both import their work when they run, so
`story --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from story.flows.cli_io import JsonFlag, WorkspaceOpt, make_settings, run_command

editorial_app = typer.Typer(help="Editorial hand-off: EDL / FCP XML / AAF / OTIO and proxies.")

FORMAT_NAMES = ("otio", "otioz", "edl", "fcp_xml", "aaf")
RenderArg = Annotated[str, typer.Argument(help="Render id, a unique prefix of one, or a folder.")]


def delivery_option(value: str | None) -> str | None:
    """`story render --rate / --retime`: a known rate (by name or number) or method, else a
    usage error naming the choices."""
    from story.tasks.outputs.delivery import check_retime, normalize_rate

    if value is None:
        return None
    try:
        return normalize_rate(value) if value[:1].isdigit() else check_retime(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def render_folder(ref: str, workspace: Path | None) -> Path:
    """A render folder from a folder path, a render id or a unique prefix of one."""
    from story.tasks.render.replay import find_render

    folder = Path(ref)
    if (folder / "manifest.json").is_file():
        return folder
    return find_render(ref, make_settings(workspace))


@editorial_app.command("export")
def export_command(
    render: RenderArg,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help=f"{' | '.join(FORMAT_NAMES)} | all; repeat for several (default otio).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output file (one format) or folder (default <render>/editorial)."
        ),
    ] = None,
    record_start: Annotated[
        str, typer.Option("--record-start", help="Record timecode of the first frame.")
    ] = "01:00:00:00",
    workspace: WorkspaceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a render's cut as OTIO / OTIOZ / EDL / FCP XML / AAF through OTIO's adapters."""
    from story.tasks.errors import StoryError
    from story.tasks.outputs.export import FORMATS, export_render

    def work() -> dict[str, Any]:
        asked = list(formats or ["otio"])
        chosen = list(FORMATS) if "all" in asked else list(dict.fromkeys(asked))
        unknown = [f for f in chosen if f not in FORMATS]
        if unknown:
            raise StoryError(f"--format {unknown[0]!r}: one of {', '.join(FORMATS)} or all")
        folder = render_folder(render, workspace)
        if out is not None and len(chosen) == 1 and out.suffix:
            targets = {chosen[0]: out}
        else:
            base = out or folder / "editorial"
            targets = {f: base / f"cut{FORMATS[f].suffix}" for f in chosen}
        exports = [
            export_render(folder, fmt, targets[fmt], record_start=record_start) for fmt in chosen
        ]
        return {"render": str(folder), "exports": exports}

    result = run_command(as_json, work)
    if result is None:
        return
    for item in result["exports"]:
        typer.echo(
            f"{item['format']:8s} {item['clips']} clips at {item['rate']} fps from "
            f"{item['record_start']} -> {item['path']}"
        )


@editorial_app.command("proxy")
def proxy_command(
    render: RenderArg,
    width: Annotated[int, typer.Option(min=16, max=8192, help="Width in pixels.")] = 1024,
    resample: Annotated[
        str,
        typer.Option(
            help="Upscaling filter: bilinear (measured best) | bicubic | lanczos | nearest | area."
        ),
    ] = "bilinear",
    out: Annotated[Path | None, typer.Option("--out", help="Output mp4.")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a review copy of a render's cut at a set width, with plot / timecode / render
    burn-ins."""
    from story.tasks.outputs.proxy import write_proxy

    result = run_command(
        as_json,
        lambda: write_proxy(render_folder(render, workspace), width, resample, out),
    )
    if result is not None:
        typer.echo(
            f"review copy {result['width']}x{result['height']}, {result['frames']} frames at "
            f"{result['rate']} fps ({result['resampling']}) -> {result['path']}"
        )

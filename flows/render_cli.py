"""`story plots | render | shot | demo`: from a story script (or one shot) to a render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from story.flows.cli_io import JsonFlag, LanceOpt, RayFlag, WorkspaceOpt, make_settings, run_command
from story.flows.export_cli import delivery_option
from story.tasks.outputs.delivery import RATES, RETIME_METHODS

DEMO_QUERIES = (
    "a red ball bouncing on the grass",
    "a box sliding sideways in the snow",
    "people walking outdoors",
)

CheckpointOpt = Annotated[
    str | None,
    typer.Option(
        help="Synthesis checkpoint: a name (t2v-64f4-v3, t2v-64f4-v2, t2v-64f4, t2v-64, tiny) "
        "or a folder; default the settings' (STORY_CHECKPOINT, t2v-64f4-v3)."
    ),
]
StrengthOpt = Annotated[
    float | None,
    typer.Option(min=0.0, help="Structure strength: scale of the added structure features (1)."),
]
DetailOpt = Annotated[
    int | None,
    typer.Option(min=0, max=6, help="Structure detail level: each level halves the guide (0)."),
]
TemporalGuidanceOpt = Annotated[
    float | None,
    typer.Option(min=0.0, help="Temporal guidance: > 1 smoother, 0 the per-frame image model (1)."),
]
NoiseShareOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=0.99,
        help="Starting noise shared across frames (0..0.99): calmer, with less motion (0; "
        "setting it turns the default --noise-warp off).",
    ),
]
NoiseWarpOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=0.99,
        help="Starting noise carried along the guide's motion (0..0.99): less flicker at the "
        "clip's motion (0.8; 0 for the renders before it was the default).",
    ),
]
FlowSmoothingOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=0.99,
        help="At every denoising step, average each frame's prediction with its neighbours' "
        "along the guide's motion (0..0.99): less flicker, but less motion and colour (0).",
    ),
]
CrossFrameOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Each frame's spatial attention also reads the shot's first frame (0..1): a "
        "little less flicker at the same motion, for a little of the guide's layout (0).",
    ),
]
StillHoldOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Hold still what the retrieved clip holds still (0..1): at every denoising step, "
        "cells the clip holds still are pulled to their mean over the frames they stay still "
        "(1; 0 for the renders before it was the default).",
    ),
]
PixelHoldOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Hold still, in the decoded frames, the pixels the retrieved clip holds still "
        "(0..1): each is pulled to its mean over the frames it stays still, so still ground "
        "next to a moving object stops flickering too; at 1, 8% less flicker than the "
        "default on the sealed set, measured as a TD configuration (0).",
    ),
]
DeflickerOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Deflicker the delivered frames along their own motion (0..1): each frame is "
        "blended toward the previous one carried along the frames' optical flow, where that "
        "flow explains the change (0.3 since 2026-12-07: 7% less flicker on the sealed set "
        "with the motion error unchanged; 0 for the renders before it was the default).",
    ),
]
render_app = typer.Typer()


def sampling_knobs(
    strength: float | None,
    detail: int | None,
    temporal_guidance: float | None,
    noise_share: float | None,
    noise_warp: float | None = None,
    flow_smoothing: float | None = None,
    cross_frame: float | None = None,
    still_hold: float | None = None,
    pixel_hold: float | None = None,
    deflicker: float | None = None,
) -> dict[str, Any]:
    """The sampling knobs a command sets; an unset knob stays out, so the render id (and every
    render made before the knob existed) is unchanged unless the TD asks for it. Both noise
    knobs at once are refused here, before any work."""
    if noise_share and noise_warp:
        raise typer.BadParameter(
            "use one of them: both correlate the starting noise across frames "
            "(--noise-share alone turns the default --noise-warp off)",
            param_hint="'--noise-share' / '--noise-warp'",
        )
    given = {
        "strength": strength,
        "detail": detail,
        "temporal_guidance": temporal_guidance,
        "noise_share": noise_share,
        "noise_warp": noise_warp,
        "flow_smoothing": flow_smoothing,
        "cross_frame": cross_frame,
        "still_hold": still_hold,
        "pixel_hold": pixel_hold,
        "deflicker": deflicker,
    }
    return {key: value for key, value in given.items() if value is not None}


@render_app.command("plots")
def plots_command(
    story_file: Annotated[Path, typer.Argument(help="Story script: YAML, Markdown or plain text.")],
    as_json: JsonFlag = False,
) -> None:
    """Show how a story splits into plots (query and prompt per plot), as editable YAML."""
    from story.tasks.script.listing import plots_listing

    result = run_command(as_json, lambda: plots_listing(story_file))
    if result is not None:
        typer.echo(result["yaml"])


@render_app.command("render")
def render_command(
    story_file: Annotated[Path, typer.Argument(help="Story script: YAML, Markdown or plain text.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Renders folder (default <workspace>/renders).")
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, help="Base seed; plots without one derive theirs.")
    ] = 0,
    checkpoint: CheckpointOpt = None,
    candidates: Annotated[
        int, typer.Option(min=1, max=8, help="Clips retrieved and rendered side by side per plot.")
    ] = 1,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Denoising steps.")] = 25,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 4.0,
    tau: Annotated[
        int | None, typer.Option(min=0, max=1000, help="Structure only for steps t >= tau.")
    ] = None,
    strength: StrengthOpt = None,
    detail: DetailOpt = None,
    temporal_guidance: TemporalGuidanceOpt = None,
    noise_share: NoiseShareOpt = None,
    noise_warp: NoiseWarpOpt = None,
    flow_smoothing: FlowSmoothingOpt = None,
    cross_frame: CrossFrameOpt = None,
    still_hold: StillHoldOpt = None,
    pixel_hold: PixelHoldOpt = None,
    deflicker: DeflickerOpt = None,
    prompt_frames: Annotated[
        int, typer.Option(min=1, help="Long shots: frames each new clip reuses (M).")
    ] = 2,
    alpha: Annotated[
        float, typer.Option(min=0.0, help="Long shots: weight of reused past noise.")
    ] = 1.0,
    beta: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Long shots: fraction of steps pinning prompt frames."),
    ] = 0.6,
    hold_prompt: Annotated[
        bool | None,
        typer.Option(
            "--hold-prompt/--no-hold-prompt",
            help="Long shots: what the clip holds still across a seam keeps the previous "
            "clip's look exactly (needs --still-hold > 0; default off).",
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            callback=delivery_option,
            help=f"Delivery rate: {' | '.join(RATES)} fps (env STORY_DELIVERY_RATE; default 24).",
        ),
    ] = None,
    retime: Annotated[
        str | None,
        typer.Option(
            callback=delivery_option,
            help=f"{' | '.join(RETIME_METHODS)}: how model frames reach it (env STORY_RETIME).",
        ),
    ] = None,
    ray: RayFlag = True,
    submit: Annotated[
        bool,
        typer.Option(
            "--submit", help="Queue on the studio's render deployment; print flow run and URL."
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --submit: wait for the render and report it.")
    ] = False,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Render a story into renders/<render_id>/ (flow `render_story`; an unchanged story is
    recognised without one), or queue it on the studio (`--submit`, see `story studio`)."""
    params: dict[str, Any] = {
        "steps": steps,
        "guidance": guidance,
        "prompt_frames": prompt_frames,
        "alpha": alpha,
        "beta": beta,
        **sampling_knobs(
            strength,
            detail,
            temporal_guidance,
            noise_share,
            noise_warp,
            flow_smoothing,
            cross_frame,
            still_hold,
            pixel_hold,
            deflicker,
        ),
    }
    if tau is not None:
        params["tau"] = tau
    if hold_prompt is not None:
        params["hold_prompt"] = hold_prompt
    settings = make_settings(workspace, lancedb, delivery_rate=rate, retime=retime)
    if submit:
        submit_command(settings, story_file, checkpoint, seed, candidates, params, wait, as_json)
        return

    def work() -> dict[str, Any]:
        from story.flows.render_story import render_story_if_changed

        return render_story_if_changed(
            str(story_file),
            settings,
            out=str(out) if out else None,
            seed=seed,
            checkpoint=checkpoint,
            candidates=candidates,
            params=params,
            use_ray=ray,
        )

    summary = run_command(as_json, work, (FileNotFoundError,))
    if summary is None:
        return
    state = "up to date, reused" if summary["reused"] else "rendered"
    typer.echo(f"render {summary['render_id']} {state}")
    for key in ("video", "storyboard", "timeline", "manifest"):
        typer.echo(f"  {key:10s} {summary[key]}")


def submit_command(
    settings: Any,
    story_file: Path,
    checkpoint: str | None,
    seed: int,
    candidates: int,
    params: dict[str, Any],
    wait: bool,
    as_json: bool,
) -> None:
    """`story render --submit [--wait]`: the flow run's id and UI page (and the render)."""
    from story.flows.studio.submit import submit_render

    def work() -> dict[str, Any]:
        return submit_render(settings, story_file, checkpoint, seed, candidates, params, wait)

    report = run_command(as_json, work, (FileNotFoundError,))
    if report is None:
        return
    typer.echo(f"flow run {report['flow_run_name']} ({report['flow_run_id']}): {report['state']}")
    typer.echo(f"  {report['url']}")
    if "render" in report:
        typer.echo(f"render {report['render']['render_id']}: {report['render']['folder']}")


@render_app.command("shot")
def shot_command(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What the shot should look like.")],
    query: Annotated[
        str | None,
        typer.Option(
            "--query", "-q", help="What motion/layout to retrieve (default: from the prompt)."
        ),
    ] = None,
    tau: Annotated[
        int | None, typer.Option(min=0, max=1000, help="Structure only for steps t >= tau.")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Noise seed.")] = 0,
    frames: Annotated[int | None, typer.Option(min=1, max=256, help="Shot length.")] = None,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Denoising steps.")] = 25,
    strength: StrengthOpt = None,
    detail: DetailOpt = None,
    temporal_guidance: TemporalGuidanceOpt = None,
    noise_share: NoiseShareOpt = None,
    noise_warp: NoiseWarpOpt = None,
    flow_smoothing: FlowSmoothingOpt = None,
    cross_frame: CrossFrameOpt = None,
    still_hold: StillHoldOpt = None,
    pixel_hold: PixelHoldOpt = None,
    deflicker: DeflickerOpt = None,
    checkpoint: CheckpointOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Renders folder (default <workspace>/renders).")
    ] = None,
    workspace: WorkspaceOpt = None,
    lancedb: LanceOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """One plot end to end: retrieve a clip, take its depth, render the prompt on it."""
    settings = make_settings(workspace, lancedb)

    def work() -> dict[str, Any]:
        from story.flows.render_shot import render_shot

        return render_shot(
            query,
            prompt,
            settings,
            out=str(out) if out else None,
            seed=seed,
            tau=tau,
            frames=frames,
            checkpoint=checkpoint,
            params={
                "steps": steps,
                **sampling_knobs(
                    strength,
                    detail,
                    temporal_guidance,
                    noise_share,
                    noise_warp,
                    flow_smoothing,
                    cross_frame,
                    still_hold,
                    pixel_hold,
                    deflicker,
                ),
            },
        )

    result = run_command(as_json, work, (FileNotFoundError,))
    if result is None:
        return
    typer.echo(f"shot on clip {result['clip_id']} ({result['clip_uri']})")
    typer.echo(f"  video     {result['video']}")
    typer.echo(f"  manifest  {result['manifest']}")


@render_app.command("demo")
def demo_command(
    workspace: WorkspaceOpt = None,
    ray: RayFlag = True,
    as_json: JsonFlag = False,
) -> None:
    """The main job on the embedded default: index the sample library, render the example story."""
    settings = make_settings(workspace)

    def work() -> dict[str, Any]:
        from story.flows.demo import run_demo

        return run_demo(settings, DEMO_QUERIES, use_ray=ray)

    report = run_command(as_json, work)
    if report is not None:
        typer.echo(report["text"])

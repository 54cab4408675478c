"""`story eval judge|synthesis|concepts|longshot`: evaluation you can trust, one command per area.

`story eval compare A B` puts two synthesis reports of the same plots side by side, B minus A
paired plot by plot (how a checkpoint or a setting is chosen on validation).

Each writes report.json and a self-contained report.html into `--out` (default
<workspace>/eval/<area>-<split>-<model>), with 95% intervals and baselines in every table.
`--split test` is sealed: the run is recorded in bench/results/sealed_test_runs.jsonl first, and
a second test run on the same model is refused unless `--rerun-sealed` is given.
Retrieval and search add their commands to `eval_app` the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

eval_app = typer.Typer(
    help="Evaluate models on the miniature world: judge, synthesis, concepts, long shots.",
    no_args_is_help=True,
)

SPLITS = ("validation", "test")
SplitOpt = Annotated[
    str, typer.Option("--split", help="validation (every choice) | test (sealed, once per model).")
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        help="Synthesis checkpoint: a name (t2v-64f4-v3, t2v-64f4-v2, t2v-64f4, t2v-64, tiny) "
        "or a folder; default the settings' (STORY_CHECKPOINT, t2v-64f4-v3).",
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Report folder.")]
RerunOpt = Annotated[
    bool, typer.Option("--rerun-sealed", help="Score the sealed test split again (recorded).")
]
JudgeOpt = Annotated[
    Path | None, typer.Option("--judge", help="Judge checkpoint folder (default judge-tiny).")
]
WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", help="Workspace folder.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="Torch CPU threads.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _checked_split(split: str) -> str:
    from story.tasks.errors import StoryError

    if split not in SPLITS:
        raise StoryError(f"--split {split!r}: one of {', '.join(SPLITS)} (train is for learning)")
    return split


def _checked_character(name: str) -> str:
    from story.tasks.errors import StoryError
    from story.tasks.evaluation.concept_characters import CHARACTERS

    if name not in CHARACTERS:
        raise StoryError(f"--character {name!r}: one of {', '.join(CHARACTERS)}")
    return name


def _out_folder(out: Path | None, workspace: Path, area: str, split: str, model_id: str) -> Path:
    return out or workspace / "eval" / f"{area}-{split}-{model_id.replace('@', '-')}"


def _seal(
    area: str,
    split: str,
    model_id: str,
    rerun: bool,
    details: dict[str, Any],
    resumable: Path | None = None,
) -> None:
    """Record a sealed test run before it starts (refused on a repeat without --rerun-sealed).

    `resumable`: the run's output folder, for runs that keep their work: the same command on the
    same folder before its report.json exists continues the run (recorded as resumed)."""
    from story.tasks.evaluation.sealed import open_sealed_run
    from story.tasks.hashing import sha256_json

    if split != "test":
        return
    if resumable is None:
        open_sealed_run(area, model_id, rerun=rerun, details=details)
        return
    key = sha256_json({"out": str(resumable.resolve()), **details})[:16]
    finished = _report_finished(resumable, details)
    open_sealed_run(area, model_id, rerun=rerun, details=details, resume_key=key, finished=finished)


def _report_finished(folder: Path, details: dict[str, Any]) -> bool:
    """Whether `folder` holds the finished report of this configuration.

    A report left by another configuration on the same folder (say 1 sampling seed, now extended
    to 3, reusing its renders) does not finish this one: its config disagrees on a setting."""
    report = folder / "report.json"
    if not report.is_file():
        return False
    try:
        config = json.loads(report.read_text()).get("summary", {}).get("config", {})
    except (OSError, ValueError, AttributeError):
        return True
    return not any(k in config and config[k] != v for k, v in details.items())


def _echo_report(result: dict[str, Any]) -> None:
    typer.echo(f"report  {result['html']}\njson    {result['json']}")


@eval_app.command("judge")
def eval_judge_command(
    split: SplitOpt = "validation",
    clips: Annotated[int, typer.Option("--clips", min=10, help="Real clips to score.")] = 1000,
    judge: JudgeOpt = None,
    out: OutOpt = None,
    rerun_sealed: RerunOpt = False,
    threads: ThreadsOpt = 1,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The judge's own accuracy per attribute on real clips (at its size and as 32x32 x 8)."""
    from story.flows.cli_io import make_settings, run_command

    def work() -> dict[str, Any]:
        import torch

        from story.tasks.evaluation.judge_eval import evaluate_judge
        from story.tasks.evaluation.judge_reader import JudgeReader

        torch.set_num_threads(threads)
        reader = JudgeReader.load(judge)
        chosen = _checked_split(split)
        folder = _out_folder(
            out, make_settings(workspace).workspace, "judge", chosen, reader.model_id
        )
        _seal("judge", chosen, reader.model_id, rerun_sealed, {"clips": clips})
        return evaluate_judge(reader, chosen, clips, folder)

    result = run_command(as_json, work, (FileNotFoundError, ValueError))
    if result is not None:
        _echo_report(result)


def _knobs(pairs: list[str]) -> dict[str, float]:
    """`--sampling KEY=VALUE` options as a dict; a malformed one is a ValueError naming it."""
    knobs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            knobs[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--sampling {pair!r}: expected KEY=NUMBER, e.g. tau=400")
    return knobs


@eval_app.command("synthesis")
def eval_synthesis_command(
    split: SplitOpt = "validation",
    checkpoint: CheckpointOpt = None,
    scenes: Annotated[int, typer.Option("--scenes", min=2, help="Plots per case set.")] = 200,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Sampling seeds per plot.")] = 3,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps.")] = 20,
    guidance: Annotated[
        float, typer.Option("--guidance", min=0.0, help="Classifier-free guidance scale.")
    ] = 4.0,
    library_clips: Annotated[
        int, typer.Option("--library-clips", min=10, help="Clips in the split's library.")
    ] = 1000,
    controlled: Annotated[
        bool, typer.Option("--controlled/--no-controlled", help="Also the exact-depth case.")
    ] = True,
    sampling: Annotated[
        list[str] | None,
        typer.Option(
            "--sampling",
            help="A sampling knob other than its default, KEY=VALUE (repeatable): tau, "
            "strength, detail, temporal_guidance, noise_share, noise_warp, flow_smoothing, "
            "cross_frame, still_hold, pixel_hold, deflicker.",
        ),
    ] = None,
    judge: JudgeOpt = None,
    out: OutOpt = None,
    rerun_sealed: RerunOpt = False,
    threads: ThreadsOpt = 1,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Processes that render (each loads the model and uses --threads threads).",
        ),
    ] = 1,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A synthesis checkpoint on the production path (retrieved clip, estimated depth, a new look)
    and the controlled case, scored by the judge with baselines, intervals and the miniature FVD.

    Every render is kept in the report folder: the same command resumes an interrupted run (on
    the sealed test split too, recorded in the ledger as resumed)."""
    from story.flows.cli_io import make_settings, run_command

    settings = make_settings(workspace)

    chosen_checkpoint = checkpoint or settings.checkpoint

    def work() -> dict[str, Any]:
        from story.models.t2v import checkpoint_id
        from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
        from story.tasks.evaluation.sealed import configuration_id
        from story.tasks.evaluation.synthesis_eval import (
            SynthesisEvalConfig,
            evaluate_synthesis,
            sealed_knobs,
        )

        chosen = _checked_split(split)
        model_id = checkpoint_id(eval_checkpoint(chosen_checkpoint, settings.checkpoints))
        config = SynthesisEvalConfig(
            split=chosen,
            checkpoint=chosen_checkpoint,
            scenes=scenes,
            seeds=seeds,
            steps=steps,
            guidance=guidance,
            library_clips=library_clips,
            controlled=controlled,
            threads=threads,
            workers=workers,
            sampling=_knobs(sampling or []),
        )
        folder = _out_folder(out, settings.workspace, "synthesis", chosen, model_id)
        details = {
            "scenes": scenes,
            "seeds": seeds,
            "steps": steps,
            "guidance": guidance,
            "library_clips": library_clips,
            "controlled": controlled,
            "sampling": config.sampling,
        }
        sealed_id = configuration_id(model_id, sealed_knobs(config.sampling, steps, guidance))
        _seal("synthesis", chosen, sealed_id, rerun_sealed, details, resumable=folder)
        return evaluate_synthesis(
            config,
            folder,
            settings.checkpoints,
            settings.workspace,
            judge,
            log=lambda line: typer.echo(line, err=True),
        )

    result = run_command(as_json, work, (FileNotFoundError, ValueError))
    if result is not None:
        _echo_report(result)


@eval_app.command("compare")
def eval_compare_command(
    report_a: Annotated[Path, typer.Argument(help="Synthesis report (folder or report.json): A.")],
    report_b: Annotated[Path, typer.Argument(help="Synthesis report scored on the same plots: B.")],
    case_set: Annotated[
        str, typer.Option("--set", help="Case set: production | controlled.")
    ] = "production",
    condition: Annotated[
        str, typer.Option("--condition", help="Rows compared: structure-guided | text-only.")
    ] = "structure-guided",
    condition_b: Annotated[
        str | None,
        typer.Option("--condition-b", help="B's rows when they differ from A's (e.g. text-only)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the comparison to this JSON file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """B minus A on every judge column, paired plot by plot, with 95% intervals: how a
    checkpoint or setting is chosen on validation (both reports must score the same split)."""
    from story.flows.cli_io import run_command
    from story.tasks.evaluation.synthesis_compare import (
        compare_reports,
        comparison_markdown,
        load_report,
    )

    def work() -> dict[str, Any]:
        result = compare_reports(
            load_report(report_a), load_report(report_b), case_set, condition, condition_b
        )
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n")
        return result

    result = run_command(as_json, work)
    if result is not None:
        typer.echo(comparison_markdown(result))


@eval_app.command("concepts")
def eval_concepts_command(
    split: SplitOpt = "validation",
    checkpoint: CheckpointOpt = None,
    shots: Annotated[int, typer.Option("--shots", min=2, help="Guide shots.")] = 32,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Training seeds per method.")] = 3,
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated concept methods.")
    ] = "timeinv_lora,timeinv",
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Character images (default datasets/concepts/CHARACTER)."),
    ] = None,
    character: Annotated[
        str, typer.Option("--character", help="bob (in the vocabulary) or zib (outside it).")
    ] = "bob",
    train_steps: Annotated[
        int | None, typer.Option("--train-steps", min=0, help="Concept training steps.")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps per render.")] = 20,
    baselines: Annotated[
        str, typer.Option("--baselines", help="Comma-separated: none, class, words.")
    ] = "none,class,words",
    lr_table: Annotated[
        float | None, typer.Option("--lr-table", min=0.0, help="Token-table learning rate.")
    ] = None,
    lr_lora: Annotated[
        float | None, typer.Option("--lr-lora", min=0.0, help="LoRA learning rate.")
    ] = None,
    pseudo_frames: Annotated[
        int,
        typer.Option(
            "--pseudo-frames",
            min=0,
            help="Frames per training pseudo-video: 0 the model's clip, 1 image steps.",
        ),
    ] = 0,
    decoder_steps: Annotated[
        int,
        typer.Option(
            "--decoder-steps",
            min=0,
            help="Steps fine-tuning each trained concept's own decoder top (0: none).",
        ),
    ] = 0,
    decoder_lr: Annotated[
        float | None,
        typer.Option("--decoder-lr", min=0.0, help="Decoder-top learning rate."),
    ] = None,
    tau: Annotated[
        int | None,
        typer.Option(
            "--tau",
            min=0,
            max=1000,
            help="Structure guidance only for denoising steps t >= TAU (default: the product's).",
        ),
    ] = None,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment/--no-augment",
            help="Pseudo-video augmentation of the token's images (crop, flip, zoom-out, "
            "jitter); --no-augment trains on each image as drawn (a shared decoder top keeps it).",
        ),
    ] = True,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="Another run's --out on the same shots (an ablation): every row both hold is "
            "compared with it, paired by shot and seed.",
        ),
    ] = None,
    shared_decoder: Annotated[
        bool,
        typer.Option(
            "--shared-decoder",
            help="One decoder top per training seed for every +decoder row (trained apart from "
            "the token), token packs reused across a method's rows; runs on other cores may "
            "share --out.",
        ),
    ] = False,
    judge: JudgeOpt = None,
    out: OutOpt = None,
    rerun_sealed: RerunOpt = False,
    threads: ThreadsOpt = 1,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Character concepts (bob or zib) per method and training seed, beside no concept, the
    class word and the character spelled out in words, read from the frames.

    The same command started again on the same --out (one per core) shares the work: each
    (row, seed) cell is made by one of them and both read all; on the test split the second is
    recorded as resumed, not as a re-run, until the report exists."""
    from story.flows.cli_io import make_settings, run_command
    from story.tasks.settings import REPO_ROOT

    settings = make_settings(workspace)

    chosen_checkpoint = checkpoint or settings.checkpoint

    def work() -> dict[str, Any]:
        from story.models.t2v import checkpoint_id
        from story.tasks.evaluation.concepts_eval import ConceptEvalConfig, evaluate_concepts
        from story.tasks.evaluation.eval_checkpoint import eval_checkpoint

        chosen = _checked_split(split)
        model_id = checkpoint_id(eval_checkpoint(chosen_checkpoint, settings.checkpoints))
        config = ConceptEvalConfig(
            split=chosen,
            checkpoint=chosen_checkpoint,
            shots=shots,
            training_seeds=seeds,
            methods=[m.strip() for m in methods.split(",") if m.strip()],
            threads=threads,
            character=_checked_character(character),
            sample_steps=steps,
            baselines=[b.strip() for b in baselines.split(",") if b.strip()],
            lr_table=lr_table,
            lr_lora=lr_lora,
            pseudo_frames=pseudo_frames,
            augment=augment,
            decoder_steps=decoder_steps,
            decoder_lr=decoder_lr,
            shared_decoder=shared_decoder,
            tau=tau,
            **({} if train_steps is None else {"train_steps": train_steps}),
        )
        folder = _out_folder(out, settings.workspace, f"concepts-{character}", chosen, model_id)
        _seal(
            f"concepts-{character}",
            chosen,
            model_id,
            rerun_sealed,
            {"shots": shots, "seeds": seeds},
            resumable=folder,
        )
        return evaluate_concepts(
            config,
            folder,
            settings.checkpoints,
            images or REPO_ROOT / "datasets" / "concepts" / character,
            judge,
            log=lambda line: typer.echo(line, err=True),
            against=against,
        )

    result = run_command(as_json, work, (FileNotFoundError, ValueError))
    if result is not None:
        _echo_report(result)


@eval_app.command("longshot")
def eval_longshot_command(
    split: SplitOpt = "validation",
    checkpoint: CheckpointOpt = None,
    shots: Annotated[int, typer.Option("--shots", min=2, help="Long shots.")] = 24,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Sampling seeds per shot.")] = 2,
    windows: Annotated[int, typer.Option("--windows", min=2, help="Model clips per shot.")] = 3,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps.")] = 20,
    still_hold: Annotated[
        float | None,
        typer.Option(
            "--still-hold",
            min=0.0,
            max=1.0,
            help="Hold still what the scene's frames hold still (default: what a long shot "
            "gets, 0 since the hold came off for long shots); 0 renders as before the hold.",
        ),
    ] = None,
    deflicker: Annotated[
        float | None,
        typer.Option(
            "--deflicker",
            min=0.0,
            max=1.0,
            help="Deflicker each delivered shot along its own motion (default: the product's, "
            "0.3); 0 renders as before the pass existed.",
        ),
    ] = None,
    settings_: Annotated[
        list[str] | None,
        typer.Option(
            "--settings",
            help="Continuation settings to score, repeatable: default, m1, per-window, "
            "hold-prompt (default: all; independent windows and the real clip always).",
        ),
    ] = None,
    judge: JudgeOpt = None,
    out: OutOpt = None,
    rerun_sealed: RerunOpt = False,
    threads: ThreadsOpt = 1,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Long shots: warp error at Reuse-and-Diffuse seams vs inside clips, beside independent
    windows and the real clip."""
    from story.flows.cli_io import make_settings, run_command

    settings = make_settings(workspace)

    chosen_checkpoint = checkpoint or settings.checkpoint

    def work() -> dict[str, Any]:
        from story.models.t2v import checkpoint_id
        from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
        from story.tasks.evaluation.longshot_eval import (
            LONG_SHOT_HOLD,
            LongShotEvalConfig,
            evaluate_longshot,
            sealed_name_knobs,
        )
        from story.tasks.evaluation.sealed import configuration_id

        chosen = _checked_split(split)
        model_id = checkpoint_id(eval_checkpoint(chosen_checkpoint, settings.checkpoints))
        config = LongShotEvalConfig(
            split=chosen,
            checkpoint=chosen_checkpoint,
            shots=shots,
            seeds=seeds,
            windows=windows,
            steps=steps,
            still_hold=LONG_SHOT_HOLD if still_hold is None else still_hold,
            threads=threads,
        )
        if deflicker is not None:
            config.deflicker = deflicker
        if settings_:
            config.settings = tuple(settings_)
        folder = _out_folder(out, settings.workspace, "longshot", chosen, model_id)
        details = {"shots": shots, "seeds": seeds, "noise_warp": config.noise_warp}
        name = configuration_id(model_id, sealed_name_knobs(config.still_hold, config.deflicker))
        _seal("longshot", chosen, name, rerun_sealed, details, resumable=folder)
        return evaluate_longshot(
            config, folder, settings.checkpoints, judge, log=lambda s: typer.echo(s, err=True)
        )

    result = run_command(as_json, work, (FileNotFoundError, ValueError))
    if result is not None:
        _echo_report(result)


@eval_app.command("consistency")
def eval_consistency_command(
    render: Annotated[Path, typer.Argument(help="A finished render folder (its manifest.json).")],
    sheet: Annotated[
        list[str] | None,
        typer.Option(
            "--sheet",
            help="NAME=DIR: a character's own images (default: the folder its pack records).",
        ),
    ] = None,
    judge: JudgeOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default RENDER/consistency).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """One render: does each character look like its images and like itself from plot to plot,
    and does the ground hold where the plots name no new place (read by the judge)."""
    from story.flows.cli_io import run_command

    def work() -> dict[str, Any]:
        from story.tasks.evaluation.consistency import story_consistency
        from story.tasks.evaluation.judge_reader import JudgeReader

        sheets = {}
        for pair in sheet or []:
            name, sep, folder = pair.partition("=")
            if not sep or not name or not folder:
                raise ValueError(f"--sheet {pair!r}: write NAME=DIR")
            sheets[name.strip("<>")] = Path(folder)
        return story_consistency(
            render, JudgeReader.load(judge), sheets, out, log=lambda s: typer.echo(s, err=True)
        )

    result = run_command(as_json, work, (FileNotFoundError, ValueError))
    if result is not None:
        _echo_report(result)

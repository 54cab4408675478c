"""`story concept train | list | copy`: the command-line side of concepts, importable without torch.

The commands import the flow and the concept code when they run, so `story --help` and every
other command do not pay for Prefect and torch at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from story.flows.cli_io import make_settings, run_command
from story.tasks.concepts.methods import (
    DEFAULT_LR_LORA,
    DEFAULT_LR_TABLE,
    DEFAULT_REG_CLIPS,
    DEFAULT_STEPS,
    METHODS,
)


def concept_train_command(
    name: Annotated[str, typer.Argument(help="Concept name; prompts write it <name>.")],
    images: Annotated[Path, typer.Option("--images", help="Folder of 3-10 images.")],
    class_word: Annotated[
        str, typer.Option("--class-word", help="What it is (e.g. sphere): the starting point.")
    ],
    method: Annotated[
        str | None,
        typer.Option(
            help=f"One of {', '.join(METHODS)} (default: the checkpoint's measured recipe, "
            "else timeinv_lora)."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Training steps (default: the checkpoint's measured recipe, else "
            f"{DEFAULT_STEPS}).",
        ),
    ] = None,
    buckets: Annotated[int, typer.Option(min=1, help="TimeInv timestep buckets.")] = 10,
    reg_clips: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Regularisation clips for the LoRA, retrieved from the library by the class "
            f"word (default: {DEFAULT_REG_CLIPS} when a library exists, else none).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    lr_table: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help=f"Token-table learning rate (default: the recipe's, else {DEFAULT_LR_TABLE:g}).",
        ),
    ] = None,
    lr_lora: Annotated[
        float | None,
        typer.Option(
            min=0.0, help=f"LoRA learning rate (default: the recipe's, else {DEFAULT_LR_LORA:g})."
        ),
    ] = None,
    pseudo_frames: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Frames per training pseudo-video: 0 the model's clip length; 1 single images "
            "with the temporal layers bypassed (several times cheaper per step) (default: the "
            "recipe's, else 0).",
        ),
    ] = None,
    decoder_steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Steps fine-tuning the concept's own decoder top on its images, for colours "
            "the model's decoder cannot draw (0: none; the pack grows by ~0.6 MB on t2v-64) "
            "(default: the recipe's, else 0).",
        ),
    ] = None,
    decoder_lr: Annotated[
        float | None,
        typer.Option(min=0.0, help="Decoder-top learning rate (default: the recipe's, else 1e-4)."),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="Synthesis checkpoint: a name (t2v-64f4-v3, t2v-64f4-v2, t2v-64f4, t2v-64, tiny) "
            "or a folder; default the settings' (STORY_CHECKPOINT, t2v-64f4-v3)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Pack folder (default <workspace>/concepts/NAME).")
    ] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder.")] = None,
    lancedb: Annotated[
        str | None,
        typer.Option("--lancedb", help="Clip library for regularisation clips (LanceDB URI)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Train a character concept from a few images (flow `train_concept`).

    Every setting not given takes the recipe measured on validation for the chosen checkpoint
    when there is one (on t2v-64f4-v3: TimeInv + LoRA with the concept's own decoder top, 3000
    steps, 10 minutes on two CPU cores here; docs/concepts.md), else the general defaults."""
    from story.flows.train_concept import train_concept

    settings = make_settings(workspace, lancedb)
    summary = run_command(
        as_json,
        lambda: train_concept(
            name,
            str(images),
            class_word,
            settings,
            method=method,
            steps=steps,
            buckets=buckets,
            reg_clips=reg_clips,
            seed=seed,
            checkpoint=checkpoint,
            out=str(out) if out else None,
            lr_table=lr_table,
            lr_lora=lr_lora,
            pseudo_frames=pseudo_frames,
            decoder_steps=decoder_steps,
            decoder_lr=decoder_lr,
        ),
        (FileNotFoundError, ValueError),
    )
    if summary is None:
        return
    typer.echo(
        f"<{summary['name']}> ({summary['method']}, {summary['steps']} steps, "
        f"{summary['recipe']}, final loss {summary['final_loss']}) -> {summary['pack']}"
    )


def concept_list_command(
    folder: Annotated[
        Path | None,
        typer.Option(
            "--folder",
            help="List only this packs folder (default: the workspace's concepts, then the "
            "bundled ones).",
        ),
    ] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """List the concepts prompts can name: the workspace's packs and the bundled ones, each with
    the checkpoint it was trained for."""
    from story.tasks.concepts.registry import ConceptRegistry, scan_packs

    settings = make_settings(workspace)

    def work() -> dict[str, Any]:
        registry = ConceptRegistry(settings)
        if folder is not None:
            registry.entries = scan_packs(folder, "folder")
        roots = [str(folder)] if folder else [str(r) for r in registry.roots]
        return {"folders": roots, "concepts": registry.listing()}

    listed = run_command(as_json, work)
    if listed is None:
        return
    rows = listed["concepts"]
    if not rows:
        typer.echo(f"no concept packs in {' or '.join(listed['folders'])}")
    for row in rows:
        typer.echo(
            f"<{row['name']}>  checkpoint {row['checkpoint'] or row['base_checkpoint']}  "
            f"{row['method']}  {row['steps']} steps  class {row['class_word']}  "
            f"{row['origin']}  {row['path']}"
        )


def concept_copy_command(
    source: Annotated[Path, typer.Argument(help="A concept pack folder.")],
    target: Annotated[Path, typer.Argument(help="Where to write the copy.")],
    half: Annotated[
        bool, typer.Option("--half", help="Store the tensors as float16 (half the bytes).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Copy a pack (e.g. a workspace pack into the bundled concepts), checked on the way."""
    from story.tasks.concepts.pack import ConceptPack

    def work() -> dict[str, Any]:
        pack = ConceptPack.load(source)
        pack.save(target, half=half)
        return {"name": pack.name, "source": str(source), "pack": str(target), "half": half}

    copied = run_command(as_json, work)
    if copied is not None:
        typer.echo(f"<{copied['name']}> {source} -> {target}")


concept_app = typer.Typer(
    help="Character concepts: TimeInv token tables + LoRA.", no_args_is_help=True
)
concept_app.command("train")(concept_train_command)
concept_app.command("list")(concept_list_command)
concept_app.command("copy")(concept_copy_command)

"""Flow `train_concept` / `story concept train|list`: a character concept from a few images.

The flow loads the synthesis checkpoint once, optionally retrieves regularisation clips for the
class word from the library, trains the chosen method, writes the pack to
`<workspace>/concepts/<name>/` (or `out`), and reports progress and the loss curve as Prefect
artifacts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from story.settings import Settings
from story.tasks.concepts import (
    METHODS,
    ConceptParams,
    check_name,
    default_depth,
    list_packs,
    model_fingerprint,
    read_concept_images,
    regularization_clips,
)
from story.tasks.concepts import train_concept as train_concept_task
from story.tasks.errors import StoryError

PROGRESS_EVERY = 10


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run, log normally
        return logging.getLogger(__name__)


def concepts_folder(settings: Settings) -> Path:
    """Where packs live by default: <workspace>/concepts."""
    return Path(settings.workspace) / "concepts"


def _regularization(settings: Settings, class_word: str, count: int, model, depth) -> list:
    from story.tasks.index import ClipIndex

    index = ClipIndex(settings.lancedb, settings.clips_table)
    if not index.exists or index.count() == 0:
        raise StoryError(
            f"{settings.lancedb}: no clip library for regularisation clips; run `story index` "
            "or train with --reg-clips 0"
        )
    cfg = model.config
    return regularization_clips(
        index, model.text_encoder(), class_word, count, depth, cfg.frames, cfg.height, cfg.width
    )


@flow(name="train_concept")
def train_concept(
    name: str,
    images: str,
    class_word: str,
    settings: dict[str, Any] | None = None,
    method: str = "timeinv_lora",
    steps: int = 400,
    buckets: int = 10,
    reg_clips: int = 0,
    seed: int = 0,
    checkpoint: str = "tiny",
    out: str | None = None,
) -> dict[str, Any]:
    """Train `<name>` from the images in `images`; returns the pack's summary."""
    from story.tasks.synthesize import load_t2v

    log = _logger()
    resolved = Settings(**(settings or {}))
    check_name(name)
    params = ConceptParams(
        method=method, steps=steps, buckets=buckets, reg_clips=reg_clips, seed=seed, threads=2
    )
    data = read_concept_images(images, params.source_size)
    tick = time.perf_counter()
    model = load_t2v(checkpoint, resolved.checkpoints, device=resolved.device)
    depth = default_depth(resolved.checkpoints)
    regularization = (
        _regularization(resolved, class_word, reg_clips, model, depth) if reg_clips else []
    )
    load_s = time.perf_counter() - tick
    log.info("training <%s> (%s) on %d images, %d steps", name, method, len(data.images), steps)
    progress_id = create_progress_artifact(
        progress=0.0, key=f"concept-{name.lower()}-progress", description=f"training <{name}>"
    )

    def report(step: int, total: int, loss: float) -> None:
        if step % PROGRESS_EVERY == 0 or step == total:
            update_progress_artifact(progress_id, 100.0 * step / max(1, total))
            log.info("step %d/%d loss %.4f", step, total, loss)

    target = Path(out) if out else concepts_folder(resolved) / name
    result = train_concept_task(
        model,
        name,
        data,
        class_word,
        params,
        out=target,
        depth=depth,
        regularization=regularization,
        base_checkpoint=model_fingerprint(model),
        progress=report,
    )
    update_progress_artifact(progress_id, 100.0)
    summary = {
        "name": name,
        "token": result.pack.token,
        "method": method,
        "pack": str(target),
        "base_checkpoint": result.pack.base_checkpoint,
        "steps": result.pack.meta["steps"],
        "images": len(data.images),
        "regularization_clips": len(regularization),
        "final_loss": result.loss_curve[-1]["loss"] if result.loss_curve else None,
        "loss_curve": result.loss_curve,
        "timings": {"load_s": round(load_s, 3), "train_s": round(result.seconds, 3)},
    }
    create_table_artifact(
        key=f"concept-{name.lower()}-loss",
        table=result.loss_curve or [{"step": 0, "loss": None}],
        description=f"loss curve of <{name}> ({method})",
    )
    create_markdown_artifact(
        key=f"concept-{name.lower()}",
        markdown=(
            f"# Concept <{name}>\n\nmethod `{method}`, {summary['steps']} steps, "
            f"{len(data.images)} images, final loss {summary['final_loss']}\n\n"
            f"pack `{target}` for checkpoint `{summary['base_checkpoint']}`\n"
        ),
        description=f"concept <{name}>",
    )
    return summary


def concept_train_command(
    name: Annotated[str, typer.Argument(help="Concept name; prompts write it <name>.")],
    images: Annotated[Path, typer.Option("--images", help="Folder of 3-10 images.")],
    class_word: Annotated[
        str, typer.Option("--class-word", help="What it is (e.g. sphere): the starting point.")
    ],
    method: Annotated[str, typer.Option(help=f"One of {', '.join(METHODS)}.")] = "timeinv_lora",
    steps: Annotated[int, typer.Option(min=0, help="Training steps.")] = 400,
    buckets: Annotated[int, typer.Option(min=1, help="TimeInv timestep buckets.")] = 10,
    reg_clips: Annotated[
        int, typer.Option(min=0, help="Regularisation clips retrieved by the class word.")
    ] = 0,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    checkpoint: Annotated[str, typer.Option(help="Synthesis checkpoint: tiny or a folder.")] = (
        "tiny"
    ),
    out: Annotated[
        Path | None, typer.Option("--out", help="Pack folder (default <workspace>/concepts/NAME).")
    ] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Train a character concept from a few images (flow `train_concept`)."""
    from story.flows.cli import fail, json_stdout, make_settings

    with json_stdout(as_json) as emit:
        settings = make_settings(workspace)
        try:
            summary = train_concept(
                name,
                str(images),
                class_word,
                settings.resolved(),
                method=method,
                steps=steps,
                buckets=buckets,
                reg_clips=reg_clips,
                seed=seed,
                checkpoint=checkpoint,
                out=str(out) if out else None,
            )
        except (StoryError, FileNotFoundError, ValueError) as exc:
            fail(str(exc), as_json, emit)
        if as_json:
            emit(summary)
            return
    typer.echo(
        f"<{summary['name']}> ({summary['method']}, {summary['steps']} steps, final loss "
        f"{summary['final_loss']}) -> {summary['pack']}"
    )


def concept_list_command(
    folder: Annotated[
        Path | None, typer.Option("--folder", help="Packs folder (default <workspace>/concepts).")
    ] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """List the concept packs in a folder."""
    from story.flows.cli import fail, json_stdout, make_settings

    with json_stdout(as_json) as emit:
        settings = make_settings(workspace)
        root = folder or concepts_folder(settings)
        try:
            rows = list_packs(root)
        except StoryError as exc:
            fail(str(exc), as_json, emit)
        if as_json:
            emit({"folder": str(root), "concepts": rows})
            return
    if not rows:
        typer.echo(f"no concept packs in {root}")
    for row in rows:
        typer.echo(
            f"<{row['name']}>  {row['method']}  {row['steps']} steps  class {row['class_word']}  "
            f"checkpoint {row['base_checkpoint']}  {row['path']}"
        )

"""Flow `train_concept` / `story concept train|list`: a character concept from a few images.

The flow loads the synthesis checkpoint once, retrieves regularisation clips for the class word
from the library for a LoRA method (DEFAULT_REG_CLIPS of them when the library exists), trains
the chosen method, writes the pack to `<workspace>/concepts/<name>/` (or `out`), and reports
progress and the loss curve as Prefect artifacts. Prompts then name it `<name>` in any shot or
story rendered on that checkpoint (`story.tasks.concepts.registry`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from story.flows.engine import flow
from story.flows.logs import run_logger
from story.flows.parameters import SettingsParam, as_settings
from story.flows.progress import Progress
from story.tasks.concepts.images import read_concept_images
from story.tasks.concepts.methods import DEFAULT_REG_CLIPS, recipe_for
from story.tasks.concepts.params import ConceptParams, check_name
from story.tasks.concepts.trainer import default_depth
from story.tasks.concepts.trainer import train_concept as train_concept_task
from story.tasks.concepts.training_data import regularization_clips
from story.tasks.errors import StoryError
from story.tasks.provenance.checkpoint_identity import model_fingerprint
from story.tasks.settings import Settings

PROGRESS_EVERY = 10
NO_LOSS_CURVE: list[dict[str, Any]] = [{"step": 0, "loss": None}]


def concepts_folder(settings: Settings) -> Path:
    """Where packs live by default: <workspace>/concepts."""
    return Path(settings.workspace) / "concepts"


def default_pack_folder(settings: Settings, name: str, fingerprint: str, checkpoint: str) -> Path:
    """<workspace>/concepts/NAME, or NAME-CHECKPOINT when NAME holds a pack for other weights
    (so training a concept for a second checkpoint keeps the first one's pack)."""
    from story.tasks.concepts.registry import pack_checkpoint

    base = concepts_folder(settings) / name
    recorded = pack_checkpoint(base)
    if recorded is None or recorded == fingerprint:
        return base
    return concepts_folder(settings) / f"{name}-{Path(checkpoint).name}"


def _library(settings: Settings):
    """The clip library, or None when there is none (or it is empty)."""
    from story.tasks.library.index import ClipIndex

    index = ClipIndex(settings.lancedb, settings.clips_table)
    return index if index.exists and index.count() > 0 else None


def _regularization(
    settings: Settings, class_word: str, requested: int | None, uses_lora: bool, model, depth, log
) -> list:
    """Regularisation clips for the LoRA: `requested` of them (None: DEFAULT_REG_CLIPS when a
    library exists, else none with a warning); methods without LoRA never use them."""
    if not uses_lora:
        if requested:
            log.info("--reg-clips ignored: the method trains no LoRA")
        return []
    if requested == 0:
        return []
    library = _library(settings)
    if library is None:
        if requested is None:
            log.warning(
                "no clip library at %s: the LoRA trains without regularisation clips "
                "(build one with `story index`, or point --lancedb at one)",
                settings.lancedb,
            )
            return []
        raise StoryError(
            f"{settings.lancedb}: no clip library for regularisation clips; run `story index` "
            "or train with --reg-clips 0"
        )
    cfg = model.config
    return regularization_clips(
        library,
        model.text_encoder(),
        class_word,
        DEFAULT_REG_CLIPS if requested is None else requested,
        depth,
        cfg.frames,
        cfg.height,
        cfg.width,
    )


def concept_params(
    fingerprint: str, given: dict[str, Any], **fixed: Any
) -> tuple[ConceptParams, dict[str, Any]]:
    """The training settings for a checkpoint: each setting given (not None) as given, else the
    checkpoint's measured recipe, else `ConceptParams`' default. Returns the params and the part
    of the recipe they took."""
    recipe = {k: v for k, v in recipe_for(fingerprint).items() if given.get(k) is None}
    chosen = {k: v for k, v in given.items() if v is not None}
    return ConceptParams(**fixed, **recipe, **chosen), recipe


@flow(name="train_concept")
def train_concept(
    name: str,
    images: str,
    class_word: str,
    settings: SettingsParam = None,
    method: str | None = None,
    steps: int | None = None,
    buckets: int = 10,
    reg_clips: int | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    out: str | None = None,
    lr_table: float | None = None,
    lr_lora: float | None = None,
    pseudo_frames: int | None = None,
    decoder_steps: int | None = None,
    decoder_lr: float | None = None,
) -> dict[str, Any]:
    """Train `<name>` from the images in `images`; returns the pack's summary. A setting left at
    None takes the checkpoint's measured recipe (`methods.MEASURED_RECIPES`, keyed by the loaded
    weights) where there is one, else `ConceptParams`' defaults; `reg_clips` None takes
    DEFAULT_REG_CLIPS regularisation clips for a LoRA method when the clip library exists;
    `pseudo_frames` 1 trains on image steps (`ConceptParams.pseudo_frames`); `decoder_steps`
    gives the concept its own decoder top (`ConceptParams.decoder_steps`)."""
    from story.tasks.render.synthesize import load_t2v

    log = run_logger(__name__)
    resolved = as_settings(settings)
    checkpoint = checkpoint or resolved.checkpoint
    check_name(name)
    given = {
        "method": method,
        "steps": steps,
        "lr_table": lr_table,
        "lr_lora": lr_lora,
        "pseudo_frames": pseudo_frames,
        "decoder_steps": decoder_steps,
        "decoder_lr": decoder_lr,
    }
    # a bad method or images folder fails before the model loads
    data = read_concept_images(images, ConceptParams(method=method or "none").source_size)
    tick = time.perf_counter()
    model = load_t2v(checkpoint, resolved.checkpoints, device=resolved.device)
    fingerprint = model_fingerprint(model)
    params, recipe = concept_params(fingerprint, given, buckets=buckets, seed=seed, threads=2)
    if recipe:
        log.info("the measured recipe of checkpoint %s: %s", fingerprint, recipe)
    method = params.method
    depth = default_depth(resolved.checkpoints)
    regularization = _regularization(
        resolved, class_word, reg_clips, params.uses_lora, model, depth, log
    )
    params = replace(params, reg_clips=len(regularization))
    load_s = time.perf_counter() - tick
    log.info(
        "training <%s> (%s) on %d images, %d steps", name, method, len(data.images), params.steps
    )
    target = Path(out) if out else default_pack_folder(resolved, name, fingerprint, checkpoint)
    with Progress(f"training <{name}>", key=f"concept-{name.lower()}-progress") as bar:

        def report(step: int, total: int, loss: float) -> None:
            bar(step, total)
            if step % PROGRESS_EVERY == 0 or step == total:
                log.info("step %d/%d loss %.4f", step, total, loss)

        result = train_concept_task(
            model,
            name,
            data,
            class_word,
            params,
            out=target,
            depth=depth,
            regularization=regularization,
            base_checkpoint=fingerprint,
            progress=report,
        )
    summary = {
        "name": name,
        "token": result.pack.token,
        "method": method,
        "recipe": "measured" if recipe else "defaults",
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
        table=result.loss_curve or NO_LOSS_CURVE,
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

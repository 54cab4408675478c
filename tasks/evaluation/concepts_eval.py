"""`story eval concepts`: does a trained character look like itself and follow its guide?

A character (`concept_characters`: bob, inside the vocabulary, or zib, outside it) is trained
with each method once per training seed and rendered as "a <name> <ground>" on every shot of the
split (`concept_shots`). Identity is read placement-free from the frames: the judge's shape,
colour and texture for bob; for zib, which no word describes, its colour signature. Alignment is
the prompt's ground and the guide's motion as the judge reads them; the main-object IoU says
whether it sits where the guide puts it. Baselines rendered with as many sampling seeds: no
concept (the untrained token), the class word alone, and the character spelled out in words.
Each (row, seed) is stored under `<out>/cells/` as it finishes, so a stopped run resumes; the
packs trained are kept under `<out>/packs/<method>-seed<k>/`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from story.models.pipeline import SAMPLING_DEFAULTS
from story.tasks.concepts.methods import (
    DEFAULT_DECODER_STEPS,
    DEFAULT_REG_CLIPS,
    DEFAULT_STEPS,
    METHODS,
)
from story.tasks.evaluation.clip_scores import score_clips
from story.tasks.evaluation.concept_characters import (
    CHARACTERS,
    Character,
    object_region,
    shows_signature,
)
from story.tasks.evaluation.concept_shots import ConceptShot, concept_shots, regularization_seeds
from story.tasks.evaluation.concept_store import (
    Cells,
    cached_decoder,
    cached_pack,
    locked,
    pairable,
    run_cells,
    save_decoder,
    stacked_rows,
)
from story.tasks.evaluation.concepts_report import (
    ALIGNED,
    GRID_SHOTS,
    NO_CONCEPT_LABEL,
    SIGNATURE,
    WITH_DECODER,
    identity_column,
    row_label,
    write_concepts_report,
)
from story.tasks.evaluation.judge_eval import MASK_THRESHOLD
from story.tasks.evaluation.judge_reader import JudgeReader
from story.tasks.world import miniworld, splits
from story.tasks.world.captions import BACKGROUND_WORDS

CHARACTER = dict(CHARACTERS["bob"].judged)
NO_CONCEPT, CLASS_WORD, WORDS = "none", "class", "words"
BASELINE_KINDS = (NO_CONCEPT, CLASS_WORD, WORDS)


def baselines(character: Character) -> dict[str, str]:
    """Baseline row label -> prompt template, for the character."""
    return {
        NO_CONCEPT_LABEL: f"a <{character.name}> {{ground}}",
        "baseline: class word only": f"a {character.class_word} {{ground}}",
        f"baseline: {character.name} spelled out in words": f"{character.words} {{ground}}",
    }


BASELINES = baselines(CHARACTERS["bob"])


@dataclass
class ConceptEvalConfig:
    """What `story eval concepts` scores."""

    split: str = splits.VALIDATION
    checkpoint: str = "tiny"
    shots: int = 32
    training_seeds: int = 3
    methods: list[str] = field(default_factory=lambda: ["timeinv_lora", "timeinv"])
    train_steps: int = DEFAULT_STEPS
    sample_steps: int = 20
    reg_clips: int = DEFAULT_REG_CLIPS
    threads: int = 1
    character: str = "bob"
    baselines: list[str] = field(default_factory=lambda: list(BASELINE_KINDS))
    lr_table: float | None = None
    lr_lora: float | None = None
    pseudo_frames: int = 0
    """Frames per training pseudo-video (0: the model's clip; 1: image steps)."""
    decoder_steps: int = 0
    """Steps fine-tuning each trained concept's own decoder top (0: the model's decoder)."""
    decoder_lr: float | None = None
    tau: int | None = None
    """Structure guidance only for denoising steps t >= tau (None: the product's default)."""
    noise_warp: float = SAMPLING_DEFAULTS["noise_warp"]
    """Noise carried along the guide's motion, the product's default (in the cells' settings)."""
    deflicker: float = SAMPLING_DEFAULTS["deflicker"]
    """The delivered frames deflickered along their own motion, the product's default (runs
    before it existed rendered at 0)."""
    augment: bool = True
    """Pseudo-video augmentation of the token's training images (False: the ablation, each
    image as drawn). A shared decoder top is trained with augmentation either way, so the two
    settings differ in the token's training alone."""
    shared_decoder: bool = False
    """One decoder top per training seed, trained apart from the token
    (`train_concept_decoder`) and given to every `+decoder` row of that seed, so the rows differ
    in the token method alone; token packs are then kept per base method and reused by its
    `+decoder` row. False: each `+decoder` row trains its own after its token."""


def method_variant(method: str, decoder_steps: int) -> tuple[str, int]:
    """A row's training method and decoder-top steps: `timeinv_lora+decoder` is TimeInv + LoRA
    with the concept's own decoder top (`decoder_steps`, or DEFAULT_DECODER_STEPS when 0); a
    plain method uses `decoder_steps` as configured."""
    base, plus, extra = method.partition("+")
    if base not in METHODS or (plus and f"+{extra}" != WITH_DECODER):
        raise ValueError(
            f"method {method!r}: use one of {list(METHODS)}, optionally with {WITH_DECODER!r}"
        )
    if plus:
        return base, decoder_steps or DEFAULT_DECODER_STEPS
    return base, decoder_steps


def _prompt(template: str, shot: ConceptShot) -> str:
    return template.format(ground=BACKGROUND_WORDS[shot.background][0])


def _render(model, template: str, shots: list[ConceptShot], seed: int, config) -> list:
    from story.tasks.render.synthesize import synthesize

    knobs = {
        "noise_warp": config.noise_warp,
        "deflicker": config.deflicker,
        **({} if config.tau is None else {"tau": config.tau}),
    }
    steps = config.sample_steps
    return [
        synthesize(model, _prompt(template, s), s.guide, seed=seed * 1009 + i, steps=steps, **knobs)
        for i, s in enumerate(shots)
    ]


def _signature(reader: JudgeReader, clips: list, character: Character) -> np.ndarray:
    """Per clip, 1/0: the character's signature colours on the object the judge finds."""
    return np.array(
        [
            shows_signature(clip, character.signature, object_region(mask, MASK_THRESHOLD))
            for clip, mask in zip(clips, reader.masks(clips), strict=True)
        ]
    )


def _score(
    reader: JudgeReader, renders: list, shots: list[ConceptShot], character: Character
) -> dict[str, np.ndarray]:
    targets = [
        {
            "shape": character.class_word,
            "colour": character.judged.get("colour", "-"),
            "texture": character.judged.get("texture", "-"),
            "background": s.background,
            "motion": s.motion,
            "camera": s.camera,
        }
        for s in shots
    ]
    scores, _ = score_clips(reader, renders, targets, [s.mask for s in shots])
    _add_identity(scores, reader, renders, character)
    scores[ALIGNED] = scores["background"] * scores["motion"]
    return scores


def _add_identity(
    scores: dict[str, np.ndarray], reader: JudgeReader, clips: list, character: Character
) -> None:
    """Add the identity column (and the colour signature, for a character that has one) to
    per-clip `scores` that already hold the character's judged attributes (1/0)."""
    identity = np.prod([scores[k] for k in character.judged], axis=0)
    if character.signature:
        scores[SIGNATURE] = _signature(reader, clips, character)
        identity = identity * scores[SIGNATURE]
    scores[identity_column(character)] = identity


SHEET, ROUND_TRIP = "the character's images, as drawn", "the same through the model's autoencoder"


def sheet_identity(
    model, reader: JudgeReader, images: str | Path, character: Character
) -> dict[str, dict[str, np.ndarray]]:
    """Identity of the character's own images, each held still for a clip, as drawn and after
    the model's autoencoder (encode, decode). No render can show more of the character than its
    decoder keeps, so the second row is a ceiling for every method."""
    from story.models.vae import vae_output_to_frames
    from story.tasks.concepts.images import read_concept_images

    cfg = model.config
    sheet = read_concept_images(images, cfg.height).images
    clips = np.stack([np.repeat(np.asarray(i)[None], cfg.frames, axis=0) for i in sheet])
    video = torch.from_numpy(clips).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        decoded = model.decode_latents(model.encode_video(video.to(model.device)))
    round_trip = vae_output_to_frames(decoded.permute(0, 2, 1, 3, 4)).cpu().numpy()
    rows = {}
    for label, frames in ((SHEET, clips), (ROUND_TRIP, round_trip)):
        reading = reader.read(list(frames))
        scores = {
            k: np.array([float(v == want) for v in reading.labels[k]])
            for k, want in character.judged.items()
        }
        _add_identity(scores, reader, list(frames), character)
        rows[label] = {k: v[:, None] for k, v in scores.items()}
    return rows


def _regularization(model, count: int, depth) -> list:
    from story.tasks.concepts.training_data import TrainingClip

    cfg = model.config
    clips = []
    for seed in regularization_seeds(count):
        spec = miniworld.sample_scene(
            seed, frames=cfg.frames, height=cfg.height, width=cfg.width, n_objects=1, shape="sphere"
        )
        clips.append(
            TrainingClip.from_frames(
                miniworld.render(spec).rgb, miniworld.make_caption(spec), depth
            )
        )
    return clips


CELL_FREE = ("methods", "baselines", "training_seeds", "threads")
"""Config fields a cell does not depend on: they choose which rows and seeds are made."""


def _cell_settings(config: ConceptEvalConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in CELL_FREE}


def evaluate_concepts(
    config: ConceptEvalConfig,
    out: str | Path,
    checkpoints: str | Path,
    images: str | Path,
    judge_folder: str | Path | None = None,
    log: Callable[[str], None] = print,
    against: str | Path | None = None,
) -> dict[str, Any]:
    """Train, render and score every method and baseline; write the report into `out`.

    `against`: another run's out folder on the same shots (an ablation: another --tau, no
    augmentation, ...); each row both runs hold is compared with it, paired by shot and seed."""
    from story.tasks.concepts.decoder import swapped_decoder
    from story.tasks.concepts.params import ConceptParams
    from story.tasks.concepts.runtime import load_concepts, unload_concepts
    from story.tasks.concepts.trainer import (
        default_depth,
        train_concept,
        train_concept_decoder,
    )
    from story.tasks.evaluation.eval_checkpoint import eval_checkpoint
    from story.tasks.provenance.checkpoint_identity import model_fingerprint
    from story.tasks.render.synthesize import load_t2v

    started = time.monotonic()
    character = CHARACTERS[config.character]
    name = character.name
    out = Path(out)
    cells = Cells(out, _cell_settings(config), keep=GRID_SHOTS)
    changed = None if against is None else pairable(Path(against), _cell_settings(config))
    torch.set_num_threads(config.threads)
    model = load_t2v(eval_checkpoint(config.checkpoint, checkpoints), device="cpu")
    reader = JudgeReader.load(judge_folder)
    cfg = model.config
    shots = concept_shots(config.split, config.shots, cfg.frames, cfg.height)
    ceiling = sheet_identity(model, reader, images, character)
    depth = default_depth(checkpoints)
    regularization: list | None = None
    fingerprint = model_fingerprint(model)
    templates = baselines(character)
    labels = dict(zip(BASELINE_KINDS, templates, strict=True))
    rows: dict[str, dict[str, list[np.ndarray]]] = {}
    examples: dict[str, list] = {}

    def record(label: str, seed: int, scores: dict[str, np.ndarray], renders: list) -> None:
        examples.setdefault(label, renders[:GRID_SHOTS])
        for key, value in scores.items():
            rows.setdefault(label, {}).setdefault(key, []).append(value)

    trained = (["none"] if NO_CONCEPT in config.baselines else []) + list(config.methods)
    for method in config.methods:
        method_variant(method, config.decoder_steps)  # refuse a bad name before any work

    def params_for(base: str, seed: int, decoder_steps: int) -> ConceptParams:
        params = ConceptParams(
            method=base,
            steps=config.train_steps,
            seed=seed,
            threads=config.threads,
            pseudo_frames=config.pseudo_frames,
            decoder_steps=0 if base == "none" else decoder_steps,
            augment=config.augment,
        )
        if config.lr_table is not None:
            params = replace(params, lr_table=config.lr_table)
        if config.lr_lora is not None:
            params = replace(params, lr_lora=config.lr_lora)
        if config.decoder_lr is not None:
            params = replace(params, decoder_lr=config.decoder_lr)
        return params

    def regularization_clips() -> list:
        nonlocal regularization
        if regularization is None:
            regularization = _regularization(model, config.reg_clips, depth)
        return regularization

    def train(base: str, params: ConceptParams, folder: Path | None) -> Any:
        reg = regularization_clips() if params.uses_lora else []
        return train_concept(
            model,
            name,
            images,
            character.class_word,
            params,
            out=folder,
            depth=depth,
            regularization=reg,
            base_checkpoint=fingerprint,
        ).pack

    def shared_decoder_params(seed: int) -> Any:
        # The decoder reads no token: its settings are the same whichever method asks for it.
        steps = config.decoder_steps or DEFAULT_DECODER_STEPS
        return replace(params_for("timeinv_lora", seed, steps), augment=True)

    def shared_pack(method: str, seed: int) -> Any:
        """The base method's token pack (trained once, kept under packs/BASE-seedK) with the
        seed's shared decoder top when the row asks for one."""
        base, decoder_steps = method_variant(method, config.decoder_steps)
        params = params_for(base, seed, 0)
        folder = out / "packs" / f"{base}-seed{seed}"
        with locked(folder.with_suffix(".lock")):
            pack = cached_pack(folder, params) or train(base, params, folder)
        if not decoder_steps or method == base:
            return pack
        decoder_params = shared_decoder_params(seed)
        folder = out / "decoders" / f"seed{seed}"
        with locked(folder.with_suffix(".lock")):
            decoder = cached_decoder(folder, decoder_params, fingerprint)
            if decoder is None:
                decoder, curve = train_concept_decoder(
                    model,
                    images,
                    decoder_params,
                    depth=depth,
                    regularization=regularization_clips(),
                )
                save_decoder(folder, decoder, decoder_params, fingerprint, curve)
        return replace(pack, decoder=decoder)

    def concept_cell(method: str, seed: int) -> Callable[[], tuple[dict[str, np.ndarray], list]]:
        def work() -> tuple[dict[str, np.ndarray], list]:
            if config.shared_decoder:
                pack = shared_pack(method, seed)
            else:
                base, decoder_steps = method_variant(method, config.decoder_steps)
                pack = train(
                    base,
                    params_for(base, seed, decoder_steps),
                    None if method == "none" else out / "packs" / f"{method}-seed{seed}",
                )
            load_concepts(model, {name: pack})
            renders = _render(model, f"a <{name}> {{ground}}", shots, seed, config)
            unload_concepts(model)
            return _score(reader, renders, shots, character), renders

        return work

    def words_cell(template: str, seed: int) -> Callable[[], tuple[dict[str, np.ndarray], list]]:
        def work() -> tuple[dict[str, np.ndarray], list]:
            renders = _render(model, template, shots, seed, config)
            return _score(reader, renders, shots, character), renders

        return work

    tasks = [
        (row_label(method), seed, concept_cell(method, seed))
        for method in trained
        for seed in range(config.training_seeds)
    ] + [
        (labels[kind], seed, words_cell(templates[labels[kind]], seed))
        for kind in (WORDS, CLASS_WORD)
        if kind in config.baselines
        for seed in range(config.training_seeds)
    ]
    finished, seconds = run_cells(cells, tasks, log)
    for (label, seed, _), done in zip(tasks, finished, strict=True):
        record(label, seed, *done)
    for seed in range(config.training_seeds):
        decoder_folder = out / "decoders" / f"seed{seed}"
        weights = (
            cached_decoder(decoder_folder, shared_decoder_params(seed), fingerprint)
            if config.shared_decoder
            else None
        )
        if weights is not None:
            with swapped_decoder(model.vae, weights, name):
                trip = sheet_identity(model, reader, images, character)[ROUND_TRIP]
            ceiling[f"the same through the decoder top of seed {seed}"] = trip
    other = None
    if against is not None and changed is not None:
        other_rows = stacked_rows(Path(against), list(rows), config.training_seeds)
        other = (Path(against), other_rows, changed)
    return write_concepts_report(
        config,
        out,
        model.model_id,
        reader.model_id,
        character,
        shots,
        rows,
        ceiling,
        examples,
        {
            **seconds,
            "total": round(time.monotonic() - started, 1),
        },
        other,
    )

"""Rendering with concepts: packs loaded onto a model, applied per prompt and per timestep."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from story.models.t2v import StructureT2V
from story.models.timeinv import (
    NUM_TRAIN_TIMESTEPS,
    SPATIAL_ATTENTION,
    ConceptConditioner,
    TimeInvTable,
    active_loras,
    concept_names,
    load_lora,
    lora_adapters,
    remove_lora,
    set_active_loras,
    tokenize_concepts,
)
from story.tasks.concepts.decoder import decoder_owner, swapped_decoder
from story.tasks.concepts.pack import ConceptPack
from story.tasks.concepts.params import ConceptError
from story.tasks.provenance.checkpoint_identity import model_fingerprint


class ConceptSet:
    """The concepts loaded on one model; `applied(prompt)` is what `synthesize` asks for."""

    def __init__(self, model: StructureT2V) -> None:
        self.model = model
        self.fingerprint = model_fingerprint(model)
        self.packs: dict[str, ConceptPack] = {}
        self.tables: dict[str, TimeInvTable] = {}
        self.lora_max_t: dict[str, int] = {}

    def add(self, pack: ConceptPack) -> None:
        """Load a pack (checked against the model); the same pack again is a no-op."""
        pack.check_checkpoint(self.fingerprint)
        old = self.packs.get(pack.name)
        if old is not None and old.meta.get("weights_sha256") == pack.meta.get("weights_sha256"):
            return
        if pack.name in lora_adapters(self.model.unet):
            remove_lora(self.model.unet, pack.name)
        lora_meta = pack.meta.get("lora") or {}
        if pack.lora:
            load_lora(
                self.model.unet,
                pack.name,
                pack.lora,
                int(lora_meta.get("rank", 4)),
                float(lora_meta.get("alpha", 4.0)),
                str(lora_meta.get("targets") or SPATIAL_ATTENTION),
            )
        self.packs[pack.name] = pack
        self.tables[pack.name] = TimeInvTable(pack.table).requires_grad_(False)
        self.lora_max_t[pack.name] = int(lora_meta.get("max_t", NUM_TRAIN_TIMESTEPS))

    @contextmanager
    def applied(self, prompt: str) -> Iterator[torch.Tensor | ConceptConditioner]:
        """Text states of a prompt; per timestep, with the named concepts' LoRA on (and the decoder
        top of the one that carries its own), in the block."""
        names = concept_names(prompt)
        if not names:
            yield self.model.encode_prompts([prompt])
            return
        cfg = self.model.config
        encoder = self.model.text_encoder()
        try:
            tokens = tokenize_concepts(
                encoder, [prompt], cfg.max_text_length, known=list(self.tables)
            )
        except ValueError as err:
            raise ConceptError(str(err)) from err
        loras = [n for n in names if self.packs[n].lora]
        switch = None
        if any(self.lora_max_t[n] < NUM_TRAIN_TIMESTEPS for n in loras):
            # Some LoRA only acts below its lora_max_t: switch the set on every step.
            unet, current = self.model.unet, list(loras)

            def switch(t: int) -> None:
                nonlocal current
                wanted = [n for n in loras if t < self.lora_max_t[n]]
                if wanted != current:
                    set_active_loras(unet, wanted)
                    current = wanted

        owner = decoder_owner(names, {n: bool(self.packs[n].decoder) for n in names})
        decoder = (
            swapped_decoder(self.model.vae, self.packs[owner].decoder or {}, owner)
            if owner
            else nullcontext()
        )
        with active_loras(self.model.unet, loras), decoder:
            yield ConceptConditioner(
                encoder, tokens, self.tables, cfg.max_text_length, self.model.device, switch
            )

    def remove(self) -> None:
        """Take every LoRA adapter out of the U-Net again."""
        for name in list(lora_adapters(self.model.unet)):
            remove_lora(self.model.unet, name)
        self.packs.clear()
        self.tables.clear()
        self.lora_max_t.clear()


def _as_pack(value: ConceptPack | str | Path) -> ConceptPack:
    return value if isinstance(value, ConceptPack) else ConceptPack.load(value)


def load_concepts(model: StructureT2V, packs: Mapping[str, ConceptPack | str | Path]) -> ConceptSet:
    """Load packs (name -> pack or pack folder) onto `model`; `synthesize` then reads `<name>`."""
    concepts = getattr(model, "concepts", None)
    if not isinstance(concepts, ConceptSet):
        concepts = ConceptSet(model)
        model.concepts = concepts
    for name, value in packs.items():
        pack = _as_pack(value)
        if pack.name != name:
            raise ConceptError(
                f"{pack.path or 'pack'}: holds concept <{pack.name}>, not <{name}> as requested"
            )
        concepts.add(pack)
    return concepts


def unload_concepts(model: StructureT2V) -> None:
    """Remove every loaded concept (and its LoRA) from the model."""
    concepts = getattr(model, "concepts", None)
    if isinstance(concepts, ConceptSet):
        concepts.remove()
        del model.concepts


def render_with_concepts(
    model: StructureT2V,
    prompt: str,
    structure: np.ndarray | None,
    packs: Mapping[str, ConceptPack | str | Path],
    **synth_kwargs: Any,
) -> np.ndarray:
    """`synthesize` with the given concept packs loaded (kept loaded for the next call)."""
    from story.tasks.render.synthesize import synthesize

    load_concepts(model, packs)
    return synthesize(model, prompt, structure, **synth_kwargs)

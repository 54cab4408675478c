"""TimeInv tables, concept tokens in prompts, per-timestep sampling, LoRA on spatial attention."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from story.models.sampler import sample_latents
from story.models.t2v import random_tiny
from story.models.timeinv import (
    ConceptConditioner,
    ConceptTokenError,
    TimeInvTable,
    active_loras,
    add_lora,
    class_word_embedding,
    concept_states,
    lora_adapters,
    lora_parameters,
    remove_lora,
    spatial_attention_names,
    timestep_bucket,
    tokenize_concepts,
)
from tests.models.t2v_stubs import HashTextEncoder


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model():
    bundle = random_tiny(text_dim=16, frames=4).eval()
    bundle.set_text_encoder(HashTextEncoder(16))
    return bundle


def test_buckets_split_the_timesteps_evenly() -> None:
    assert [timestep_bucket(t, 10) for t in (0, 99, 100, 550, 999)] == [0, 0, 1, 5, 9]
    assert timestep_bucket(999, 1) == 0
    counts = torch.bincount(timestep_bucket(torch.arange(1000), 8), minlength=8)
    assert counts.min() >= 124 and counts.max() <= 126


def test_table_lookup_changes_with_the_timestep_bucket() -> None:
    table = TimeInvTable(torch.arange(4 * 3, dtype=torch.float32).reshape(4, 3))
    rows = table(torch.tensor([0, 249, 250, 999]))
    assert torch.equal(rows[0], rows[1])
    assert not torch.equal(rows[1], rows[2])
    assert torch.equal(rows[3], table.table[3])


def test_every_row_starts_from_the_class_word(model) -> None:
    encoder = model.text_encoder()
    vector = class_word_embedding(encoder, "sphere")
    table = TimeInvTable.from_vector(vector, 5)
    assert table.buckets == 5 and torch.allclose(table.table, vector.expand(5, -1))
    with pytest.raises(ConceptTokenError, match="class word"):
        class_word_embedding(encoder, "  ")


def test_concept_slot_carries_the_row_of_the_timestep(model) -> None:
    encoder = model.text_encoder()
    tokens = tokenize_concepts(encoder, ["a <bob> on the grass", "just grass"], 8)
    assert tokens.slots["bob"][0].sum() == 1 and tokens.slots["bob"][1].sum() == 0
    table = TimeInvTable(torch.randn(2, 16))
    early = concept_states(encoder, tokens, {"bob": table}, torch.tensor([900, 900]), 8)
    late = concept_states(encoder, tokens, {"bob": table}, torch.tensor([100, 100]), 8)
    slot = tokens.slots["bob"][0]
    # The stub encoder returns its input embeddings, so the slot shows the table row itself.
    width = slot.shape[0]
    assert torch.allclose(early[0, :width][slot][0], table.table[1])
    assert torch.allclose(late[0, :width][slot][0], table.table[0])
    assert torch.equal(early[1], late[1])
    with pytest.raises(ConceptTokenError, match="not loaded"):
        tokenize_concepts(encoder, ["a <alice>"], 8, known=["bob"])


def test_sampler_accepts_per_timestep_states(model) -> None:
    encoder = model.text_encoder()
    tokens = tokenize_concepts(encoder, ["a <bob>"], 8)
    flat = TimeInvTable(torch.randn(1, 16))
    conditioner = ConceptConditioner(encoder, tokens, {"bob": flat}, 8)
    null = model.encode_prompts([""])
    fixed = conditioner(0).clone()
    run = dict(steps=4, guidance=3.0, generator=None)
    a = sample_latents(
        model, conditioner, null, **{**run, "generator": torch.Generator().manual_seed(1)}
    )
    b = sample_latents(model, fixed, null, **{**run, "generator": torch.Generator().manual_seed(1)})
    assert torch.allclose(a, b, atol=1e-6)
    varying = TimeInvTable(torch.randn(4, 16) * 3)
    per_step = ConceptConditioner(encoder, tokens, {"bob": varying}, 8)
    c = sample_latents(
        model, per_step, null, **{**run, "generator": torch.Generator().manual_seed(1)}
    )
    assert per_step.encoder_runs == 4
    assert not torch.allclose(a, c)


def test_lora_sits_only_on_spatial_attention_and_base_is_frozen(model) -> None:
    names = spatial_attention_names(model.unet)
    assert names and all(".attentions." in n and "temp_attentions" not in n for n in names)
    assert {n.rsplit(".", 1)[-1] for n in names} == {"to_q", "to_k", "to_v", "0"}
    assert any(".attn1." in n for n in names) and any(".attn2." in n for n in names)
    model.unet.requires_grad_(False)
    add_lora(model.unet, "bob", rank=2, alpha=2)
    lora_names = [n for n, _ in model.unet.named_parameters() if ".lora_" in n]
    assert lora_names
    assert not any("temp_attentions" in n or "transformer_in" in n for n in lora_names)
    assert all(
        re.search(r"\.attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.", n) for n in lora_names
    )
    x = torch.randn(1, *model.latent_shape)
    t = torch.tensor([500])
    states = torch.randn(1, 8, 16)
    base = model.predict(x, t, states)
    with active_loras(model.unet, ["bob"]):
        trainable = [n for n, p in model.unet.named_parameters() if p.requires_grad]
        assert trainable and all(".lora_" in n for n in trainable)
        assert len(lora_parameters(model.unet, "bob")) == len(trainable)
        for p in lora_parameters(model.unet, "bob"):
            p.data.normal_()
        changed = model.predict(x, t, states)
    assert not torch.allclose(base, changed)
    assert torch.allclose(model.predict(x, t, states), base)
    remove_lora(model.unet, "bob")
    assert lora_adapters(model.unet) == set()
    assert np.isfinite(model.predict(x, t, states).numpy()).all()

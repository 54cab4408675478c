"""Text encoders: bundled MiniLM, plus tiny CLIP and open_clip models saved and loaded locally."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from story.models.text_encoder import (
    MiniLMTextEncoder,
    TextEncoder,
    load_text_encoder,
)


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return load_text_encoder("minilm", device="cpu")


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


@pytest.fixture(scope="module")
def tiny_clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in _byte_chars():
            vocab[char + suffix] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=40,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    CLIPTextModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-open-clip")
    config = folder / "tiny-open-clip-text.json"
    config.write_text(
        json.dumps(
            {
                "embed_dim": 16,
                "vision_cfg": {
                    "image_size": 32,
                    "layers": 1,
                    "width": 32,
                    "patch_size": 8,
                    "head_width": 16,
                },
                "text_cfg": {
                    "context_length": 77,
                    "vocab_size": 49408,
                    "width": 32,
                    "heads": 2,
                    "layers": 1,
                },
            }
        )
    )
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(config.stem)
    checkpoint = folder / "weights.safetensors"
    save_file(model.state_dict(), checkpoint)
    return config, checkpoint


def _check_inputs_embeds_path(encoder: TextEncoder) -> None:
    ids, mask = encoder.tokenize(["a red ball rolls left", "snow"], max_length=16)
    with torch.no_grad():
        from_ids = encoder.hidden_states(input_ids=ids, attention_mask=mask)
        embeds = encoder.token_embeddings()(ids)
        from_embeds = encoder.hidden_states(inputs_embeds=embeds, attention_mask=mask)
    assert from_ids.shape[:2] == ids.shape
    torch.testing.assert_close(from_embeds, from_ids)


def test_minilm_embeddings_are_deterministic_unit_vectors(minilm: MiniLMTextEncoder) -> None:
    texts = ["a red ball bouncing on grass", "a blue cube slides in the snow", "x"]
    first = minilm.embed_sentences(texts, batch_size=2)
    second = minilm.embed_sentences(list(reversed(texts)))[::-1]
    assert first.shape == (3, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, second, atol=1e-5)
    assert isinstance(minilm, TextEncoder)
    assert minilm.dim == 384 and "@" in minilm.name


def test_minilm_places_paraphrases_closer_than_unrelated_text(minilm: MiniLMTextEncoder) -> None:
    a, paraphrase, other = minilm.embed_sentences(
        [
            "a red ball bouncing on grass",
            "a crimson sphere hopping across a lawn",
            "a city at night",
        ]
    )
    assert a @ paraphrase > a @ other + 0.2


def test_minilm_hidden_states_accept_inputs_embeds(minilm: MiniLMTextEncoder) -> None:
    _check_inputs_embeds_path(minilm)


def test_minilm_rejects_a_single_string_and_a_missing_folder(
    minilm: MiniLMTextEncoder, tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match="single string"):
        minilm.embed_sentences("a red ball")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_text_encoder("minilm", path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown text encoder"):
        load_text_encoder("bert-of-nowhere")


def test_clip_text_encoder_loads_from_a_local_folder(tiny_clip_folder: Path) -> None:
    encoder = load_text_encoder(f"clip:{tiny_clip_folder}", device="cpu")
    vectors = encoder.embed_sentences(["a red ball", "a blue cube", "a red ball"])
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
    _check_inputs_embeds_path(encoder)


def test_open_clip_text_encoder_loads_a_local_checkpoint(
    tiny_open_clip: tuple[Path, Path],
) -> None:
    config, checkpoint = tiny_open_clip
    encoder = load_text_encoder(f"open_clip:{config}:{checkpoint}", device="cpu")
    vectors = encoder.embed_sentences(["a red ball", "a blue cube"])
    assert vectors.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    _check_inputs_embeds_path(encoder)

"""The numpy query towers give the torch encoders' vectors (the cold search path relies on it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from story.models.numpy_text import NumpyClipText, NumpyMiniLM, erf
from story.models.video_text import VideoTextEncoder, VideoTextModel
from tests.models.test_video_text import tiny_config

QUERIES = [
    "a ball rolling toward the lens on a lawn, the camera sweeps right",
    "Café — ümlaut 123!",
    "x " * 300,
    "a",
]


def test_erf_is_accurate() -> None:
    x = np.linspace(-6, 6, 2001)
    assert np.abs(erf(x) - np.vectorize(math.erf)(x)).max() < 2e-7


def test_minilm_matches_the_transformers_encoder() -> None:
    from story.models.text_encoder import load_text_encoder

    reference = load_text_encoder("minilm", device="cpu").embed_sentences(QUERIES)
    ours = NumpyMiniLM().embed_sentences(QUERIES)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("vocab", [None, list(range(256, 2000))])
def test_video_text_tower_matches_torch(tmp_path, vocab) -> None:
    torch.manual_seed(1)
    config = tiny_config(vocab=vocab)
    if vocab is not None:
        from story.models.video_text_config import compact_vocab_size

        config.open_clip["text_cfg"]["vocab_size"] = compact_vocab_size(vocab, 49408)
    folder = VideoTextModel(config).save_pretrained(tmp_path / "m", dtype=torch.float32)
    reference = VideoTextEncoder(folder, device="cpu").embed_text(QUERIES)
    np.testing.assert_allclose(NumpyClipText(folder).embed_text(QUERIES), reference, atol=1e-5)

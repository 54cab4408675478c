"""The torch-free CLIP BPE gives open_clip's ids, so cold and warm query paths agree."""

from __future__ import annotations

import numpy as np
import pytest

from story.models.bpe_tokenizer import BPETokenizer

TEXTS = [
    "A cobalt polka-dot ball recedes into the distance on the grass, while the camera holds still.",
    "box drifting off to the left across the dunes",
    "Café naïve — “quotes” &amp; html 123 don't won't",
    "   spaced    out\ttext\n",
    "ümlaut straße 東京 emoji 🎬",
    "",
    "word " * 120,
]


@pytest.fixture(scope="module")
def reference():
    open_clip = pytest.importorskip("open_clip")
    return open_clip.tokenizer.SimpleTokenizer()


def test_ids_match_open_clip_including_truncation(reference) -> None:
    ours = BPETokenizer()
    for length in (77, 16):
        expected = reference(TEXTS, context_length=length).numpy()
        got = ours.batch(TEXTS, length)
        np.testing.assert_array_equal(got, expected)
        assert got[-1, -1] == ours.eot


def test_a_non_string_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="text 1 is int"):
        BPETokenizer().batch(["fine", 3], 8)  # type: ignore[list-item]

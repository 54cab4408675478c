"""Visual encoders: the bundled video-text model by default (none when switched off or absent);
a tiny open_clip model saved locally loads and embeds clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from story.models.visual_encoder import OpenCLIPVisualEncoder, VisualEncoder, load_visual_encoder
from story.tasks.settings import Settings


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """A tiny random open_clip model: its config JSON, its saved weights and the model itself."""
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-open-clip")
    config = folder / "tiny-open-clip-visual.json"
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
    torch.manual_seed(1)
    model = open_clip.create_model(config.stem).eval()
    checkpoint = folder / "weights.safetensors"
    save_file(model.state_dict(), checkpoint)
    return config, checkpoint, model


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint: tuple[Path, Path, object]) -> OpenCLIPVisualEncoder:
    config, checkpoint, _ = tiny_checkpoint
    settings = Settings(open_clip_model=str(config), open_clip_checkpoint=checkpoint, device="cpu")
    loaded = load_visual_encoder(settings)
    assert isinstance(loaded, OpenCLIPVisualEncoder)
    return loaded


def _clip(seed: int, frames: int = 6, size: tuple[int, int] = (40, 56)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, *size, 3), dtype=np.uint8)


def test_the_default_is_the_bundled_video_text_model_unless_switched_off(tmp_path: Path) -> None:
    from story.models.video_text import VideoTextEncoder

    assert load_visual_encoder(Settings(video_text_model="none")) is None
    assert load_visual_encoder(Settings(checkpoints=tmp_path)) is None  # no bundled weights
    bundled = Settings().checkpoints / "video-text-tiny" / "model.safetensors"
    if bundled.is_file():
        assert isinstance(load_visual_encoder(Settings(device="cpu")), VideoTextEncoder)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_visual_encoder(Settings(video_text_model=str(tmp_path / "nowhere")))


def test_clip_vectors_are_unit_length_and_deterministic(encoder: OpenCLIPVisualEncoder) -> None:
    clips = [_clip(0), _clip(1, frames=20, size=(64, 64)), _clip(0)]
    vectors = encoder.embed_clips(clips)
    assert isinstance(encoder, VisualEncoder)
    assert vectors.shape == (3, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])


def test_loaded_weights_are_the_saved_ones(
    encoder: OpenCLIPVisualEncoder, tiny_checkpoint: tuple[Path, Path, object]
) -> None:
    _, _, original = tiny_checkpoint
    texts = ["a red ball", "a blue cube"]
    with torch.no_grad():
        expected = original.encode_text(encoder.tokenizer(texts), normalize=True).numpy()
    np.testing.assert_allclose(encoder.embed_text(texts), expected, atol=1e-5)
    assert encoder.name.startswith("open_clip:tiny-open-clip-visual@")


def test_bad_inputs_and_settings_are_named(
    encoder: OpenCLIPVisualEncoder, tiny_checkpoint: tuple[Path, Path, object], tmp_path: Path
) -> None:
    config, _, _ = tiny_checkpoint
    with pytest.raises(ValueError, match="clip 1"):
        encoder.embed_clips([_clip(0), np.zeros((4, 8, 8), np.uint8)])
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_visual_encoder(
            Settings(
                open_clip_model=str(config), open_clip_checkpoint=tmp_path / "missing.safetensors"
            )
        )
    with pytest.raises(ValueError, match="open_clip_model is not"):
        load_visual_encoder(Settings(open_clip_checkpoint=tmp_path / "w.safetensors"))

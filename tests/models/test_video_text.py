"""Video-text models: a tiny random config saved and loaded in the shipped format, clips and
texts embedded in one space, full-size OpenCLIP weights loaded through the same interface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from story.models.video_text import VideoTextEncoder, VideoTextModel, prepare_clip
from story.models.video_text_config import (
    VideoTextConfig,
    VideoTextTokenizer,
    compact_table,
    compact_vocab_size,
)

TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 24, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_config(**overrides) -> VideoTextConfig:
    values = {
        "open_clip": json.loads(json.dumps(TINY_OPEN_CLIP)),
        "arch": "test-video-text-tiny",
        "frames": 4,
        "appearance_frames": 2,
        "motion_size": 16,
        "motion_width": 16,
        "temporal_layers": 1,
        "input_size": 32,
    }
    values.update(overrides)
    return VideoTextConfig(**values)


def clip(seed: int, frames: int = 6, size: tuple[int, int] = (40, 56)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, *size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VideoTextModel]:
    torch.manual_seed(0)
    model = VideoTextModel(tiny_config()).eval()
    folder = model.save_pretrained(tmp_path_factory.mktemp("vt") / "tiny")
    return folder, model


def test_saved_checkpoint_reloads_the_same_fp16_weights(saved) -> None:
    folder, model = saved
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors"}
    loaded = VideoTextModel.from_pretrained(folder)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor.half().float())


def test_clip_vectors_are_unit_deterministic_and_any_size(saved) -> None:
    encoder = VideoTextEncoder(saved[0], device="cpu")
    vectors = encoder.embed_clips([clip(0), clip(1, frames=20, size=(64, 64)), clip(0)])
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
    prepared = encoder.prepare(clip(3))
    assert prepared.shape == (4, 32, 32, 3) and prepared.dtype == np.uint8
    np.testing.assert_allclose(
        encoder.embed_clips([prepared]), encoder.embed_clips([clip(3)]), atol=2e-2
    )


def test_text_vectors_share_the_space(saved) -> None:
    encoder = VideoTextEncoder(saved[0], device="cpu")
    texts = encoder.embed_text(["a ball bounces", "a cube slides to the left"])
    assert texts.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    with pytest.raises(TypeError):
        encoder.embed_text("one string")


def test_motion_changes_the_vector_when_frames_are_the_same_set(saved) -> None:
    encoder = VideoTextEncoder(saved[0], device="cpu")
    forward = clip(5, frames=8)
    backward = forward[::-1].copy()
    vectors = encoder.embed_clips([forward, backward])
    assert not np.allclose(vectors[0], vectors[1], atol=1e-4)


def test_compact_vocabulary_maps_unknown_tokens_to_one_id_and_keeps_eot_last() -> None:
    table = compact_table([320, 1000, 2000], 49408)
    assert table[0] == 0 and table[320] == 1 and table[2000] == 3
    assert table[5] == table[40000] == 4
    assert table[49407] == 5 == table.max()
    assert compact_vocab_size([320, 1000, 2000], 49408) == 6
    config = tiny_config(vocab=[320, 1000, 2000])
    ids = VideoTextTokenizer(config)(["a b c"])
    assert ids.max() < 6 and ids[0, 0] == 4  # the start token is not kept: unknown


def test_bad_checkpoint_folders_name_the_file(tmp_path: Path, saved) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        VideoTextModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes((saved[0] / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="config.json"):
        VideoTextModel.from_pretrained(tmp_path)


def test_prepare_clip_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match="clip 7"):
        prepare_clip(np.zeros((2, 8, 8), np.uint8), 4, 16, index=7)


def test_full_size_open_clip_weights_load_through_the_same_interface(tmp_path: Path) -> None:
    """A plain OpenCLIP checkpoint (tiny random config) becomes a video-text folder."""
    import open_clip
    from safetensors.torch import save_file

    config_file = tmp_path / "tiny-openclip-full.json"
    config_file.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(config_file)
    torch.manual_seed(3)
    reference = open_clip.create_model("tiny-openclip-full").eval()
    weights = tmp_path / "open_clip.safetensors"
    save_file(reference.state_dict(), weights)
    model = VideoTextModel.from_open_clip(str(config_file), weights, frames=4, appearance_frames=4)
    folder = model.save_pretrained(tmp_path / "converted", dtype=torch.float32)
    encoder = VideoTextEncoder(folder, device="cpu")
    frames = clip(9, frames=4, size=(24, 24))
    with torch.inference_mode():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(model.config.mean).view(1, 3, 1, 1)
        std = torch.tensor(model.config.std).view(1, 3, 1, 1)
        per_frame = reference.encode_image((x - mean) / std, normalize=False)
        expected = torch.nn.functional.normalize(per_frame.mean(0), dim=-1).numpy()
    np.testing.assert_allclose(encoder.embed_clips([frames])[0], expected, atol=1e-5)

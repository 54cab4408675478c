"""The shipped default: a render that names no checkpoint is drawn by t2v-64f4-v3 (64x64, 16
frames, f4 autoencoder); the older t2v-64f4-v2, t2v-64f4, t2v-64 and t2v-tiny stay loadable by
name. The rest of the suite renders on tiny (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from story.flows.build_index import build_index
from story.flows.precompute_depth import synthesis_size
from story.flows.render_story import render_story
from story.models.t2v import StructureT2V
from story.tasks.outputs.video_io import read_mp4
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.checkpoints import resolve_checkpoint
from story.tasks.settings import Settings
from tests.flows.library_fixture import build_library

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.delenv("STORY_CHECKPOINT", raising=False)
    return Settings(workspace=tmp_path / "ws")


def test_the_default_checkpoint_is_t2v_64f4_v3_and_the_older_ones_stay_loadable(
    default_settings: Settings,
) -> None:
    assert default_settings.checkpoint == "t2v-64f4-v3"
    assert synthesis_size(default_settings) == (64, 64)
    for name in ("t2v-64f4-v2", "t2v-64f4", "t2v-64"):
        assert synthesis_size(default_settings, name) == (64, 64)
    assert synthesis_size(default_settings, "tiny") == (32, 32)
    root = default_settings.checkpoints

    def load(name: str) -> StructureT2V:
        return StructureT2V.from_pretrained(resolve_checkpoint(name, root))

    shipped, v2, first, older = (
        load(default_settings.checkpoint),
        load("t2v-64f4-v2"),
        load("t2v-64f4"),
        load("t2v-64"),
    )
    assert shipped.model_id.startswith("t2v-64f4-v3@")
    assert v2.model_id.startswith("t2v-64f4-v2@") and first.model_id.startswith("t2v-64f4@")
    assert older.model_id.startswith("t2v-64@")
    # The f4 autoencoder keeps a 16x16 latent per 64x64 frame; t2v-64's f8 one keeps 8x8.
    assert shipped.latent_shape[1:] == (16, 16, 16) and older.latent_shape[1:] == (16, 8, 8)
    # v2 is t2v-64f4 trained on: the same autoencoder, tensor for tensor, under a U-Net whose
    # weights moved.
    for name, tensor in first.vae.state_dict().items():
        assert torch.equal(tensor, v2.vae.state_dict()[name]), name
    assert any(
        not torch.equal(tensor, v2.unet.state_dict()[name])
        for name, tensor in first.unet.state_dict().items()
    ), "v2's U-Net should differ from t2v-64f4's"
    # v3 is v2 with a decoder trained on for colour: v2's U-Net and structure encoder and the
    # autoencoder's encoder side unchanged (so the same latent space), the decoder moved.
    for module in ("unet", "structure_encoder"):
        theirs = getattr(v2, module).state_dict()
        for name, tensor in getattr(shipped, module).state_dict().items():
            assert torch.equal(tensor, theirs[name]), f"{module}.{name}"
    assert shipped.latent_shape == v2.latent_shape
    assert (shipped.config.vae_scaling, shipped.config.vae_shift) == (
        v2.config.vae_scaling,
        v2.config.vae_shift,
    )
    ours, theirs = shipped.vae.state_dict(), v2.vae.state_dict()
    encoder_side = [n for n in ours if n.startswith(("encoder.", "quant_conv."))]
    decoder_side = [n for n in ours if n.startswith(("decoder.", "post_quant_conv."))]
    assert encoder_side and decoder_side and len(encoder_side) + len(decoder_side) == len(ours)
    for name in encoder_side:
        assert torch.equal(ours[name], theirs[name]), name
    assert any(not torch.equal(ours[n], theirs[n]) for n in decoder_side), "v3's decoder moved"


def test_a_render_that_names_no_checkpoint_is_drawn_by_t2v_64f4_v3(
    default_settings: Settings, tmp_path: Path
) -> None:
    library = build_library(tmp_path / "library", n_good=2, with_bad=False)
    build_index(str(library.manifest), default_settings.resolved(), use_ray=False)
    story = tmp_path / "ball.yaml"
    story.write_text("title: Ball\nplots:\n  - A red ball bounces on the grass\n")
    summary = render_story(
        str(story), default_settings.resolved(), params={"steps": 2, "guidance": 2.0}, use_ray=False
    )
    manifest = read_manifest(summary["folder"])
    assert manifest["inputs"]["checkpoint"]["name"] == "t2v-64f4-v3"
    assert manifest["checkpoints"][0]["path"] == "checkpoints/t2v-64f4-v3"
    frames = read_mp4(Path(summary["folder"]) / "plots" / "plot_000.mp4")
    assert frames.shape[0] == 16 and frames.shape[1:3] == (64, 64)

"""Flow `train_concept` and the `concept train` / `concept list` commands on a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from story.flows.build_index import build_index
from story.flows.concept_cli import concept_list_command, concept_train_command
from story.flows.train_concept import train_concept
from story.models.t2v import random_tiny
from story.tasks.concepts.pack import ConceptPack
from story.tasks.errors import StoryError
from story.tasks.provenance.checkpoint_identity import checkpoint_fingerprint
from story.tasks.settings import Settings
from story.tasks.world import miniworld
from tests.flows.library_fixture import build_library


def concept_app() -> typer.Typer:
    """The commands as the `story` CLI registers them: `story concept train|list`."""
    app = typer.Typer()
    concept = typer.Typer()
    concept.command("train")(concept_train_command)
    concept.command("list")(concept_list_command)
    app.add_typer(concept, name="concept")
    return app


def train_bob(images: Path, workspace: Path, *options: str):
    """`story concept train bob --images IMAGES --class-word sphere ... --json`."""
    args = ["concept", "train", "bob", "--images", str(images), "--class-word", "sphere"]
    return CliRunner().invoke(
        concept_app(), [*args, *options, "--workspace", str(workspace), "--json"]
    )


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        spec = miniworld.sample_scene(i, frames=1, height=32, width=32, shape="sphere")
        Image.fromarray(miniworld.render(spec).rgb[0]).save(folder / f"img{i}.png")
    return folder


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return random_tiny(text_dim=384, frames=4).save_pretrained(tmp_path / "ckpt")


def test_flow_trains_a_pack_into_the_workspace(
    prefect_harness, settings: Settings, images: Path, checkpoint: Path, capfd
) -> None:
    summary = train_concept(
        "bob",
        str(images),
        "sphere",
        settings.resolved(),
        method="timeinv_lora",
        steps=2,
        buckets=2,
        checkpoint=str(checkpoint),
    )
    pack_dir = Path(settings.workspace) / "concepts" / "bob"
    assert summary["pack"] == str(pack_dir) and summary["steps"] == 2
    assert [row["step"] for row in summary["loss_curve"]] == [2]
    pack = ConceptPack.load(pack_dir)
    assert pack.base_checkpoint == checkpoint_fingerprint(checkpoint)
    assert pack.table.shape == (2, 384) and pack.lora
    # No clip library in this workspace: the LoRA trained without regularisation clips.
    assert summary["regularization_clips"] == 0 and pack.meta["params"]["reg_clips"] == 0

    app = concept_app()
    capfd.readouterr()
    result = CliRunner().invoke(
        app, ["concept", "list", "--workspace", str(settings.workspace), "--json"]
    )
    assert result.exit_code == 0
    listed = json.loads(capfd.readouterr().out)
    own = [c for c in listed["concepts"] if c["origin"] == "workspace"]
    assert [(c["name"], c["method"], c["steps"], c["path"]) for c in own] == [
        ("bob", "timeinv_lora", 2, str(pack_dir))
    ]


def test_training_for_a_second_checkpoint_keeps_the_first_pack(
    prefect_harness, settings: Settings, images: Path, checkpoint: Path, tmp_path: Path
) -> None:
    other = random_tiny(text_dim=384, frames=4, seed=3).save_pretrained(tmp_path / "other")
    common = {"method": "ti", "steps": 1, "buckets": 1}
    first = train_concept(
        "bob", str(images), "sphere", settings, checkpoint=str(checkpoint), **common
    )
    second = train_concept("bob", str(images), "sphere", settings, checkpoint=str(other), **common)
    assert first["pack"] == str(Path(settings.workspace) / "concepts" / "bob")
    assert second["pack"] == str(Path(settings.workspace) / "concepts" / "bob-other")
    assert ConceptPack.load(first["pack"]).base_checkpoint == checkpoint_fingerprint(checkpoint)
    assert ConceptPack.load(second["pack"]).base_checkpoint == checkpoint_fingerprint(other)


def test_flow_regularises_the_lora_with_library_clips(
    prefect_harness, tmp_path: Path, images: Path, checkpoint: Path
) -> None:
    library = build_library(tmp_path / "library", n_good=3, with_bad=False)
    settings = Settings(workspace=tmp_path / "ws").resolved()
    build_index(str(library.manifest), settings, use_ray=False)
    common = {"steps": 1, "buckets": 2, "checkpoint": str(checkpoint)}
    summary = train_concept("bob", str(images), "sphere", settings, **common)
    # The library holds 3 clips (fewer than the default 8): the LoRA trained with all of them.
    assert summary["regularization_clips"] == 3
    meta = ConceptPack.load(summary["pack"]).meta
    assert meta["regularization_clips"] == 3 and meta["params"]["reg_clips"] == 3
    chosen = train_concept(
        "bob", str(images), "sphere", settings, reg_clips=1, out=str(tmp_path / "one"), **common
    )
    assert chosen["regularization_clips"] == 1
    no_lora = train_concept(
        "bob", str(images), "sphere", settings, method="timeinv", out=str(tmp_path / "ti"), **common
    )
    assert no_lora["regularization_clips"] == 0, "a method without LoRA has no use for them"
    empty = Settings(workspace=tmp_path / "empty").resolved()
    with pytest.raises(StoryError, match="no clip library.*--reg-clips 0"):
        train_concept("bob", str(images), "sphere", empty, reg_clips=2, **common)


def test_train_command_names_a_bad_image_folder(tmp_path: Path, capfd) -> None:
    empty = tmp_path / "no-images"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing to see")
    capfd.readouterr()
    result = train_bob(empty, tmp_path / "ws")
    assert result.exit_code == 2
    error = json.loads(capfd.readouterr().out)["error"]
    assert str(empty) in error and "no images" in error


def test_train_command_takes_the_learning_rates(
    prefect_harness, tmp_path: Path, images: Path, checkpoint: Path, capfd
) -> None:
    capfd.readouterr()
    options = ["--steps", "1", "--buckets", "2", "--checkpoint", str(checkpoint)]
    result = train_bob(images, tmp_path / "ws", *options, "--lr-lora", "1e-5")
    assert result.exit_code == 0, capfd.readouterr().out
    pack = ConceptPack.load(tmp_path / "ws" / "concepts" / "bob")
    assert pack.meta["params"]["lr_lora"] == 1e-5
    assert pack.meta["params"]["lr_table"] == 5e-4


def test_the_default_checkpoint_trains_with_its_measured_recipe_unless_told_otherwise(
    checkpoint: Path,
) -> None:
    """`story concept train` on t2v-64f4-v3 takes the recipe measured on its validation shots
    (TimeInv + LoRA + the concept's own decoder top) for every setting not given; on a
    checkpoint without one, the general defaults."""
    from story.flows.train_concept import concept_params
    from story.tasks.concepts.methods import recipe_for
    from story.tasks.concepts.params import ConceptParams

    repo = Path(__file__).resolve().parents[2]
    default = checkpoint_fingerprint(repo / "checkpoints" / "t2v-64f4-v3")
    assert recipe_for(default), "the shipped default has a measured concept recipe"
    params, recipe = concept_params(default, {"steps": 50, "method": None}, seed=1)
    assert (params.method, params.steps, params.decoder_steps) == ("timeinv_lora", 50, 400)
    assert (params.lr_table, params.lr_lora, params.pseudo_frames) == (5e-3, 1e-3, 1)
    assert params.decoder_lr == 4e-4 and params.seed == 1
    assert "steps" not in recipe and "method" in recipe, "what was given is kept"
    other, none = concept_params(checkpoint_fingerprint(checkpoint), {"steps": 50}, seed=1)
    assert none == {} and other == ConceptParams(steps=50, seed=1)


def test_a_checkpoint_is_named_as_everywhere_else(
    prefect_harness, tmp_path: Path, images: Path
) -> None:
    """`story concept train --checkpoint NAME` (and the settings' default, a name) means the
    folder of that name under the checkpoints root, as in `story render`; an unknown name says
    where it looked."""
    root = tmp_path / "checkpoints"
    folder = random_tiny(text_dim=384, frames=4).save_pretrained(root / "t2v-mine")
    repo = Path(__file__).resolve().parents[2]
    (root / "depth-tiny").symlink_to(repo / "checkpoints" / "depth-tiny")
    settings = Settings(workspace=tmp_path / "ws", checkpoints=root).resolved()
    common = {"method": "ti", "steps": 1, "buckets": 1}
    summary = train_concept("bob", str(images), "sphere", settings, checkpoint="t2v-mine", **common)
    assert ConceptPack.load(summary["pack"]).base_checkpoint == checkpoint_fingerprint(folder)
    assert summary["recipe"] == "defaults", "no measured recipe for these weights"
    with pytest.raises(StoryError, match=f"checkpoint 't2v-other': no model at {root}"):
        train_concept("bob", str(images), "sphere", settings, checkpoint="t2v-other", **common)

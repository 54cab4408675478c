"""`story eval concepts` for the character no word describes: its resume (slow: trains), the
autoencoder ceiling, and one decoder top shared by the method rows of a training seed."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from story.tasks.settings import REPO_ROOT
from tests.tasks.evaluation.test_longshot_concepts_eval import _tiny_judge


@pytest.fixture
def mini(tmp_path):
    """A checkpoints root with a random tiny `t2v-mini` and the bundled depth net."""
    from story.models.t2v import random_tiny

    root = tmp_path / "checkpoints"
    random_tiny(frames=4, size=16).save_pretrained(root / "t2v-mini")
    (root / "depth-tiny").symlink_to(REPO_ROOT / "checkpoints" / "depth-tiny")
    return root


@pytest.mark.slow
def test_zib_is_scored_by_its_colour_signature_and_a_rerun_resumes(tmp_path, mini) -> None:
    from story.tasks.evaluation.concepts_eval import ConceptEvalConfig, evaluate_concepts

    config = ConceptEvalConfig(
        checkpoint="t2v-mini",
        shots=2,
        training_seeds=1,
        methods=["timeinv_lora"],
        train_steps=1,
        sample_steps=2,
        reg_clips=1,
        character="zib",
        baselines=["words"],
        lr_table=1e-3,
    )
    images = REPO_ROOT / "datasets" / "concepts" / "zib"
    judge = _tiny_judge(tmp_path / "j")
    result = evaluate_concepts(config, tmp_path / "out", mini, images, judge)
    assert set(result["zib"]) == {"timeinv_lora", "baseline: zib spelled out in words"}
    table = json.loads((tmp_path / "out" / "report.json").read_text())["tables"][0]
    assert "colour signature" in table["columns"] and "ground + motion" in table["columns"]
    ceiling = json.loads((tmp_path / "out" / "report.json").read_text())["tables"][-1]
    assert set(ceiling["rows"]) == {
        "the character's images, as drawn",
        "the same through the model's autoencoder",
    }
    pack = json.loads(
        (tmp_path / "out" / "packs" / "timeinv_lora-seed0" / "concept.json").read_text()
    )
    assert pack["params"]["lr_table"] == 1e-3 and pack["name"] == "zib"
    cells = sorted(p.name for p in (tmp_path / "out" / "cells").iterdir())
    assert cells == [
        "baseline-zib-spelled-out-in-words-seed0.npz",
        "settings.json",
        "timeinv-lora-seed0.npz",
    ]
    # A second run finds every cell done: it trains and renders nothing, and reports the same.
    again = evaluate_concepts(config, tmp_path / "out", mini, images, judge)
    assert again["identity"] == result["identity"]
    assert not (tmp_path / "out" / "packs" / "timeinv_lora-seed1").exists()


def test_the_autoencoder_ceiling_reads_the_sheet_as_drawn_and_after_the_decoder() -> None:
    from story.models.t2v import random_tiny
    from story.tasks.evaluation.concept_characters import CHARACTERS
    from story.tasks.evaluation.concepts_eval import ROUND_TRIP, SHEET, sheet_identity
    from story.tasks.evaluation.judge_reader import JudgeReader

    zib = CHARACTERS["zib"]
    rows = sheet_identity(
        random_tiny(frames=4, size=64),
        JudgeReader.load(),
        REPO_ROOT / "datasets" / "concepts" / "zib",
        zib,
    )
    identity = zib.identity
    # Every sheet image shows zib as drawn: a sphere with both signature colours.
    assert rows[SHEET][identity].shape == (5, 1) and rows[SHEET][identity].mean() == 1.0
    # An untrained autoencoder keeps none of it, and the ceiling row says so.
    assert rows[ROUND_TRIP]["colour signature"].mean() == 0.0
    assert rows[ROUND_TRIP][identity].mean() == 0.0


def test_a_row_can_add_the_concepts_own_decoder_and_a_bad_name_is_refused() -> None:
    from story.tasks.concepts.methods import DEFAULT_DECODER_STEPS
    from story.tasks.evaluation.concepts_eval import method_variant

    assert method_variant("timeinv_lora", 0) == ("timeinv_lora", 0)
    assert method_variant("timeinv_lora+decoder", 0) == ("timeinv_lora", DEFAULT_DECODER_STEPS)
    assert method_variant("ti+decoder", 50) == ("ti", 50)
    for bad in ("timeinv_lora+vae", "dreambooth", "ti+"):
        with pytest.raises(ValueError, match="optionally with '\\+decoder'"):
            method_variant(bad, 0)


def test_a_shared_decoder_serves_every_decoder_row_and_the_methods_are_compared(
    tmp_path, mini
) -> None:
    from story.tasks.evaluation.concepts_eval import ConceptEvalConfig, evaluate_concepts

    config = ConceptEvalConfig(
        checkpoint="t2v-mini",
        shots=2,
        training_seeds=1,
        methods=["ti", "ti+decoder", "none+decoder"],
        train_steps=1,
        sample_steps=2,
        reg_clips=1,
        character="zib",
        baselines=["none"],
        decoder_steps=2,
        shared_decoder=True,
        tau=500,
    )
    images = REPO_ROOT / "datasets" / "concepts" / "zib"
    judge = _tiny_judge(tmp_path / "j")
    out = tmp_path / "out"
    result = evaluate_concepts(config, out, mini, images, judge)
    # One decoder for the seed, one token pack per base method: ti and ti+decoder share theirs.
    assert sorted(p.name for p in (out / "decoders").iterdir() if p.is_dir()) == ["seed0"]
    assert sorted(p.name for p in (out / "packs").iterdir() if p.is_dir()) == [
        "none-seed0",
        "ti-seed0",
    ]
    assert set(result["differences"]) == {
        "ti minus none (a trained token)",
        "ti+decoder minus none+decoder (a trained token)",
        "ti+decoder minus ti (decoder top)",
        "none+decoder minus none (decoder top)",
    }
    tables = json.loads((out / "report.json").read_text())["tables"]
    assert any(t["title"].startswith("What each ingredient adds") for t in tables)
    # The ceiling also reads the sheet through the seed's decoder top, which bounds +decoder rows.
    assert set(tables[-1]["rows"]) == {
        "the character's images, as drawn",
        "the same through the model's autoencoder",
        "the same through the decoder top of seed 0",
    }
    # The augmentation ablation changes the token's training alone: the seed's decoder top
    # (trained with augmentation) is read back, the token is trained on the images as drawn.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "decoders").symlink_to(out / "decoders")
    decoder_files = {p: p.stat().st_mtime_ns for p in (out / "decoders" / "seed0").iterdir()}
    ablation = evaluate_concepts(
        replace(config, augment=False, methods=["ti+decoder"], baselines=[]),
        plain,
        mini,
        images,
        judge,
        against=out,
    )
    assert {p: p.stat().st_mtime_ns for p in (out / "decoders" / "seed0").iterdir()} == (
        decoder_files
    )
    record = json.loads((plain / "packs" / "ti-seed0" / "concept.json").read_text())
    assert record["params"]["augment"] is False
    # ... and compared with the first run, paired by shot and seed, naming what differs.
    assert set(ablation["against"]) == {"ti+decoder minus ti+decoder in out"}
    assert ablation["against"]["ti+decoder minus ti+decoder in out"]["ground + motion"]["n"] == 2
    notes = [t.get("note", "") for t in json.loads((plain / "report.json").read_text())["tables"]]
    assert any("augment False here, True there" in n for n in notes)
    with pytest.raises(ValueError, match="only runs on the same shots"):
        evaluate_concepts(
            replace(config, shots=3), tmp_path / "o3", mini, images, judge, against=out
        )
    # Scores made at another tau are not read back as this tau's: the folder is refused.
    with pytest.raises(ValueError, match=r"other settings \(tau: 500 there, 0 now\)"):
        evaluate_concepts(replace(config, tau=0), out, mini, images, judge)
    # A kept decoder trained with other settings is refused, not silently reused.
    for cell in (out / "cells").iterdir():
        cell.unlink()
    with pytest.raises(ValueError, match="decoder top trained with other settings"):
        evaluate_concepts(replace(config, decoder_steps=3), out, mini, images, judge)
    # The ceiling row reads a seed's decoder top only if it was trained with this run's settings.
    other = tmp_path / "other"
    other.mkdir()
    (other / "decoders").symlink_to(out / "decoders")
    with pytest.raises(ValueError, match="decoder top trained with other settings"):
        evaluate_concepts(
            replace(config, decoder_steps=3, methods=["none"]), other, mini, images, judge
        )

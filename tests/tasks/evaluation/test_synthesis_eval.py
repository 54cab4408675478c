"""The synthesis evaluation: production-path cases, tables with baselines, a resumable run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from story.models.depth import load_depth_estimator
from story.models.text_encoder import load_text_encoder
from story.tasks.evaluation.clip_scores import ALL, COLUMNS, MOTION
from story.tasks.evaluation.eval_library import EvalLibrary
from story.tasks.evaluation.synthesis_cases import controlled_cases, production_cases
from story.tasks.evaluation.synthesis_tables import MOTION_ERROR, case_tables
from story.tasks.settings import REPO_ROOT
from story.tasks.world import miniworld, plots, splits


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> EvalLibrary:
    encoder = load_text_encoder("minilm", device="cpu")
    return EvalLibrary(tmp_path_factory.mktemp("lib"), splits.VALIDATION, 40, encoder)


@pytest.fixture(scope="module")
def cases(library):
    depth = load_depth_estimator("tiny", REPO_ROOT / "checkpoints", device="cpu")
    return production_cases(
        splits.VALIDATION, 4, library, lambda rgb, size: depth.estimate(rgb, size=size), 4, 16, 16
    )


def test_library_is_built_once_from_its_split(library) -> None:
    again = EvalLibrary(library.folder, splits.VALIDATION, 40, library.encoder)
    assert again.index.version() == library.index.version() and again.index.count() == 40
    rows = library.index.rows()
    seeds = [int(u.removeprefix("miniworld://")) for u in rows["uri"]]
    assert {splits.split_of(s) for s in seeds} == {splits.VALIDATION}


def test_production_prompt_differs_from_the_retrieved_clip_and_targets_follow_it(cases) -> None:
    for case in cases:
        clip = miniworld.attributes(miniworld.sample_scene(case.clip_seed))
        said = miniworld.attributes_from_caption(case.prompt)
        assert all(case.target[k] == said[k] != clip[k] for k in plots.LOOK)
        assert case.target["shape"] == said["shape"]
        assert (case.target["motion"], case.target["camera"]) == (clip["motion"], clip["camera"])
        assert case.guide.shape == (4, 16, 16) and case.guide.dtype == np.float32
        assert np.array_equal(case.guide, case.guide.astype(np.float16).astype(np.float32))
        assert case.guide_mask.shape == (4, 16, 16) and case.clip.shape == (4, 16, 16, 3)
        assert not np.array_equal(case.ideal, case.clip)
        assert case.frozen().shape == case.clip.shape and (case.frozen() == case.clip[0]).all()
        assert set(case.retrieval) == {"shape", "motion", "camera"}


def test_controlled_cases_use_exact_depth_and_their_own_caption() -> None:
    (case,) = controlled_cases(splits.VALIDATION, 1, 4, 16, 16)
    spec = miniworld.sample_scene(case.scene_seed, frames=4, height=16, width=16)
    assert case.target == miniworld.attributes(spec)
    assert case.prompt == miniworld.make_caption(spec) and np.array_equal(case.ideal, case.clip)
    assert case.retrieval is None


def test_tables_put_baselines_and_intervals_beside_every_figure(cases) -> None:
    rng = np.random.default_rng(0)
    n = len(cases)
    labels = ["guided", "text", "baseline: frozen", "ceiling", "again"]
    rows = {
        label: {c: rng.uniform(0, 1, (n, 3 if label in ("guided", "text") else 1)) for c in COLUMNS}
        for label in labels
    }
    embeddings = {
        label: [rng.normal(size=(n, 4)) for _ in range(3 if label in ("guided", "text") else 1)]
        for label in labels
    }
    tables, summary = case_tables(
        "production",
        cases,
        {"rows": rows, "embeddings": embeddings},
        *["guided", "text"],
        "ceiling",
        "again",
    )
    main, diffs, structure, temporal, fvd, retrieval = tables
    assert "text" not in structure.rows and structure.rows["guided"]["depth error / text-only"]
    assert set(main.rows) == set(labels) and main.rows["baseline: frozen"][ALL]["seeds"] == 1
    assert set(diffs.rows) == {"guided - text", "guided - baseline: frozen"}
    assert "ceiling" not in temporal.rows and "ceiling" not in fvd.rows
    assert all({"low", "high"} <= set(cell) for row in main.rows.values() for cell in row.values())
    assert summary["seeds"] == 3 and "retrieval_all_three" in summary
    assert retrieval.rows["top-1 hit (hybrid search)"]["all three"]["n"] == n


def test_motion_error_is_not_fooled_by_too_much_motion_cancelling_too_little(cases) -> None:
    n = len(cases)
    labels = ["guided", "text", "ceiling", "again"]
    rows = {label: {c: np.full((n, 1), 0.5) for c in COLUMNS} for label in labels}
    real = np.linspace(1.0, 2.0, n)[:, None]
    rows["ceiling"][MOTION] = real
    rows["again"][MOTION] = real.copy()  # moves exactly as the real clip, plot by plot
    # Twice the real motion on even plots, none on odd ones: about the real motion pooled.
    rows["guided"][MOTION] = np.where(np.arange(n)[:, None] % 2 == 0, 2 * real, 0.0)
    rows["text"][MOTION] = 0.5 * real  # half the motion everywhere
    embeddings = {label: [np.eye(n, 4)] for label in labels}
    tables, _ = case_tables(
        "production",
        cases,
        {"rows": rows, "embeddings": embeddings},
        "guided",
        "text",
        "ceiling",
        "again",
    )
    temporal = next(t for t in tables if t.title.startswith("production: temporal"))
    guided, text = temporal.rows["guided"], temporal.rows["text"]
    assert abs(guided["motion / real"]["ratio"] - 1.0) < 0.2  # the pooled ratio is fooled ...
    assert guided["motion error / real"]["ratio"] == pytest.approx(1.0, abs=0.01)  # ... this not
    assert text["motion error / real"]["ratio"] == pytest.approx(0.5, abs=0.01)
    assert temporal.rows["again"]["motion error / real"]["ratio"] == 0.0
    diffs = next(t for t in tables if t.title.startswith("production: paired"))
    assert diffs.rows["guided - text"][MOTION_ERROR]["difference"] > 0


@pytest.mark.slow
def test_a_whole_run_writes_the_report_and_resumes_from_its_renders(tmp_path) -> None:
    from story.models.judge import VideoJudge
    from story.models.t2v import random_tiny
    from story.tasks.evaluation.synthesis_eval import SynthesisEvalConfig, evaluate_synthesis
    from story.tasks.training.judge_data import attribute_vocab

    checkpoints = tmp_path / "checkpoints"
    random_tiny(frames=4, size=16).save_pretrained(checkpoints / "t2v-mini")
    (checkpoints / "depth-tiny").symlink_to(REPO_ROOT / "checkpoints" / "depth-tiny")
    judge = VideoJudge(
        attributes=attribute_vocab(),
        frames=4,
        size=16,
        appearance_frames=2,
        appearance_widths=(4, 8),
        motion_widths=(8, 8),
        embedding_dim=8,
    ).save_half(tmp_path / "judge")
    config = SynthesisEvalConfig(
        checkpoint="t2v-mini", scenes=3, seeds=2, steps=2, library_clips=20
    )
    first = evaluate_synthesis(config, tmp_path / "out", checkpoints, tmp_path / "ws", judge, str)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {"production", "controlled"} <= set(report["summary"]["results"])
    per_case = report["summary"]["per_case"]["production"]
    assert len(per_case["scene_seeds"]) == 3
    assert np.asarray(per_case["structure-guided"]["object IoU"]).shape == (3, 2)
    # one file per render: 2 sets x 2 conditions x 3 plots x 2 seeds
    assert len(list((tmp_path / "out" / "renders").rglob("*.npy"))) == 24
    again = evaluate_synthesis(config, tmp_path / "out", checkpoints, tmp_path / "ws", judge, str)
    assert again["results"] == first["results"]

    # A knob sweep point renders the guided condition anew and shares the text-only renders.
    tau = SynthesisEvalConfig(
        checkpoint="t2v-mini", scenes=3, seeds=2, steps=2, library_clips=20, sampling={"tau": 999}
    )
    swept = evaluate_synthesis(tau, tmp_path / "out", checkpoints, tmp_path / "ws", judge, str)
    assert len(list((tmp_path / "out" / "renders").rglob("*.npy"))) == 36
    recorded = json.loads((tmp_path / "out" / "report.json").read_text())["summary"]["config"]
    assert recorded["sampling"] == {"tau": 999} and swept["model_id"] == first["model_id"]
    with pytest.raises(ValueError, match="knob"):
        SynthesisEvalConfig(sampling={"taus": 1})


def test_renders_on_two_processes_equal_one_and_a_stopped_run_renders_only_the_rest(
    tmp_path,
) -> None:
    from story.models.t2v import random_tiny
    from story.tasks.evaluation.synthesis_renders import ensure_renders, load_renders, render_job

    model = random_tiny(frames=4, size=16)
    model.save_pretrained(tmp_path / "model")
    guide = np.linspace(-1, 1, 4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16)

    def jobs(folder):
        return [
            render_job(folder, model.model_id, prompt, g, 4, seed, 2, 4.0, {})
            for prompt, g, seed in [("a red cube", guide, 1), ("a blue ball", None, 2)] * 2
        ]

    one, two = jobs(tmp_path / "one"), jobs(tmp_path / "two")
    assert len({j.path for j in one}) == 2  # the repeated jobs are one render each
    log: list[str] = []
    assert ensure_renders(model, tmp_path / "model", one, log=log.append) == 2
    assert ensure_renders(model, tmp_path / "model", two, workers=2) == 2
    assert np.array_equal(load_renders(one), load_renders(two))
    assert log[-1].startswith("renders: 2/2")
    one[1].path.unlink()
    assert ensure_renders(model, tmp_path / "model", one) == 1
    assert np.array_equal(load_renders(one), load_renders(two))
    assert ensure_renders(model, tmp_path / "model", one) == 0


def test_a_knob_added_later_names_a_render_only_when_set(tmp_path) -> None:
    """Renders cached before cross_frame existed are still found at its default (off); set, it
    names the render of either condition, so the two are never read back as each other."""
    from story.tasks.evaluation.synthesis_eval import SynthesisEvalConfig, knobs_for
    from story.tasks.evaluation.synthesis_renders import render_job

    plain = knobs_for(SynthesisEvalConfig(), guided=True)
    assert "cross_frame" not in plain and "noise_warp" in plain
    anchored = SynthesisEvalConfig(sampling={"cross_frame": 1.0})
    assert knobs_for(anchored, guided=False)["cross_frame"] == 1.0
    jobs = [
        render_job(tmp_path, "m@1", "a red cube", None, 4, 0, 2, 4.0, knobs)
        for knobs in (plain, knobs_for(anchored, guided=True))
    ]
    assert jobs[0].path != jobs[1].path
    # still_hold, on by default: named at its default; off, a render keeps the name it had
    # before the knob existed, so those renders are found again.
    held = SynthesisEvalConfig(sampling={"still_hold": 1.0})
    assert plain["still_hold"] == knobs_for(held, guided=True)["still_hold"] == 1.0
    assert "still_hold" not in knobs_for(held, guided=False), "text-only has nothing to hold"
    off = knobs_for(SynthesisEvalConfig(sampling={"still_hold": 0.0}), guided=True)
    assert "still_hold" not in off and "cross_frame" not in off
    # pixel_hold, off by default: named only when set, and only for guided renders.
    assert "pixel_hold" not in plain
    pixels = SynthesisEvalConfig(sampling={"pixel_hold": 1.0})
    assert knobs_for(pixels, guided=True)["pixel_hold"] == 1.0
    assert knobs_for(pixels, guided=False) == knobs_for(SynthesisEvalConfig(), guided=False)


def test_a_deflickered_render_is_derived_from_its_stored_render_as_rendering_it_would_give(
    tmp_path,
) -> None:
    """deflicker acts on the finished frames alone, so a run at a new strength reads the stored
    render without it and applies the pass: the same frames rendering it again gives, none
    rendered; with no stored render it renders."""
    from story.models.t2v import random_tiny
    from story.tasks.evaluation.synthesis_eval import SynthesisEvalConfig, knobs_for
    from story.tasks.evaluation.synthesis_renders import ensure_renders, load_renders, render_job

    model = random_tiny(frames=4, size=16)
    model.save_pretrained(tmp_path / "model")
    guide = np.linspace(-1, 1, 4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16)
    plain = knobs_for(SynthesisEvalConfig(sampling={"deflicker": 0.0}), guided=True)
    calm = knobs_for(SynthesisEvalConfig(sampling={"deflicker": 0.5}), guided=True)
    assert "deflicker" not in plain, "renders made before the pass keep their names"
    assert calm == {**plain, "deflicker": 0.5}

    def job(folder, knobs):
        return render_job(folder, model.model_id, "a red cube", guide, 4, 1, 2, 4.0, knobs)

    base = job(tmp_path / "run", plain)
    assert base.base is None
    derived = job(tmp_path / "run", calm)
    assert derived.base == base.path and derived.path != base.path
    assert ensure_renders(model, tmp_path / "model", [base]) == 1
    log: list[str] = []
    assert ensure_renders(model, tmp_path / "model", [derived], log=log.append) == 0
    assert log == ["renders: 1 derived from their stored renders"]
    fresh = job(tmp_path / "fresh", calm)  # no stored render beside it: rendered
    assert ensure_renders(model, tmp_path / "model", [fresh]) == 1
    assert np.array_equal(load_renders([derived]), load_renders([fresh]))
    assert not np.array_equal(load_renders([derived]), load_renders([base]))

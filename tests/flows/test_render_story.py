"""render_story and its audit trail, as a TD checks them: files, lineage, reuse, reproduction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import opentimelineio as otio
import pytest

from story.flows.render_story import render_story
from story.flows.reproduce import reproduce_render
from story.flows.rerender import rerender
from story.tasks.outputs.video_io import read_mp4
from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.provenance.manifest import read_manifest
from story.tasks.render.jobs import RenderError
from story.tasks.settings import Settings
from tests.flows.library_fixture import build_library
from tests.flows.studio_fixture import TWO_SHOTS, story_file, story_studio

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAST = {"steps": 3, "guidance": 2.0}


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """An indexed library, two tiny random checkpoints and the bundled depth net."""
    root = tmp_path_factory.mktemp("studio")
    library = build_library(root / "library", n_good=4, with_bad=False)
    return story_studio(root, library.manifest, ("alt",), ray_workers=2)


def _render(settings: Settings, story: Path, **kwargs) -> dict:
    kwargs.setdefault("use_ray", False)
    return render_story(str(story), settings.resolved(), params=FAST, **kwargs)


def test_a_render_writes_every_output_and_its_lineage(studio: Settings) -> None:
    story = story_file(studio)
    summary = _render(studio, story)
    folder = Path(summary["folder"])
    assert folder.name == summary["render_id"]

    plots = [read_mp4(folder / "plots" / f"plot_{i:03d}.mp4") for i in range(2)]
    assert [p.shape[0] for p in plots] == [4, 4]
    assert read_mp4(summary["video"]).shape[0] == 24  # 8 model frames at 8 fps, delivered at 24
    timeline = otio.adapters.read_from_file(summary["timeline"])
    assert len(list(timeline.find_clips())) == 2
    assert "plot" in Path(summary["storyboard"]).read_text()

    manifest = read_manifest(folder)
    assert manifest["status"] == "complete"
    assert manifest["inputs"]["checkpoint"]["name"] == "tiny"
    assert len(manifest["checkpoints"][0]["sha256"]) == 64
    assert manifest["library"]["version"] >= 1
    assert "commit" in manifest["environment"]["git"]
    for plot in manifest["plots"]:
        assert plot["clip_id"] and plot["clip_source_sha256"] and plot["depth_key"]
        assert plot["seed"] is not None and plot["params"]["steps"] == 3
    assert manifest["plots"][0]["seed"] == 5

    registry = LineageRegistry(studio.workspace)
    tree = registry.tree(summary["render_id"])
    assert [p["clip"]["id"] for p in tree["plots"]] == [p["clip_id"] for p in manifest["plots"]]
    assert registry.renders_using(manifest["plots"][1]["clip_id"]) == [summary["render_id"]]


def test_an_unchanged_story_is_reused_and_a_changed_one_reuses_its_shots(
    studio: Settings, tmp_path: Path
) -> None:
    story = story_file(studio)
    first = _render(studio, story)
    again = _render(studio, story)
    assert again["reused"] and again["render_id"] == first["render_id"]

    edited = tmp_path / "edited.yaml"
    edited.write_text(TWO_SHOTS.replace("slides sideways in the snow", "slides sideways on snow"))
    changed = _render(studio, edited)
    assert changed["render_id"] != first["render_id"]
    plots = read_manifest(changed["manifest"])["plots"]
    assert plots[0]["candidates"][0]["cached"] is True
    assert (
        plots[0]["frames_sha256"] == read_manifest(first["manifest"])["plots"][0]["frames_sha256"]
    )


def test_reproduce_is_identical_and_refuses_a_changed_checkpoint(studio: Settings) -> None:
    story = story_file(studio)
    summary = _render(studio, story, seed=11)
    result = reproduce_render(summary["render_id"][:10], studio.resolved())
    assert result["identical"] is True
    assert all(p["identical"] for p in result["plots"])

    weights = next((Path(studio.checkpoints) / "t2v-tiny" / "unet").glob("*.safetensors"))
    original = weights.read_bytes()
    try:
        tampered = bytearray(original)
        tampered[-5] ^= 0xFF
        weights.write_bytes(bytes(tampered))
        with pytest.raises(RenderError, match="checkpoint 'tiny'.*changed"):
            reproduce_render(summary["render_id"], studio.resolved())
    finally:
        weights.write_bytes(original)


def test_sampling_knobs_a_td_sets_are_rendered_recorded_and_reproduced(studio: Settings) -> None:
    from story.flows.render_cli import sampling_knobs
    from story.models.pipeline import SAMPLING_DEFAULTS

    assert sampling_knobs(None, None, None, None) == {}
    assert sampling_knobs(None, None, 1.5, 0.6) == {"temporal_guidance": 1.5, "noise_share": 0.6}
    knobs = sampling_knobs(None, None, 1.5, None, 0.6, 0.4, 0.5, 0.5, 0.5)
    assert knobs == {
        "temporal_guidance": 1.5,
        "noise_warp": 0.6,
        "flow_smoothing": 0.4,
        "cross_frame": 0.5,
        "still_hold": 0.5,
        "pixel_hold": 0.5,
    }
    story = story_file(studio)
    plain = _render(studio, story, seed=3)
    calm = render_story(
        str(story), studio.resolved(), params={**FAST, **knobs}, seed=3, use_ray=False
    )
    assert calm["render_id"] != plain["render_id"]
    old, new = read_manifest(plain["manifest"]), read_manifest(calm["manifest"])
    default = SAMPLING_DEFAULTS["noise_warp"]
    assert all(p["params"]["noise_warp"] == default for p in old["plots"])
    assert all(p["params"]["noise_warp"] == 0.6 for p in new["plots"])
    assert all(p["params"]["temporal_guidance"] == 1.5 for p in new["plots"])
    assert all(p["params"]["flow_smoothing"] == 0.4 for p in new["plots"])
    assert all(p["params"]["cross_frame"] == 0.5 for p in new["plots"])
    assert all("flow_smoothing" not in p["params"] for p in old["plots"])  # unset: not recorded
    assert all("cross_frame" not in p["params"] for p in old["plots"])
    assert all(p["params"]["pixel_hold"] == 0.5 for p in new["plots"])
    assert all("pixel_hold" not in p["params"] for p in old["plots"])  # off unless set
    assert all(p["params"]["still_hold"] == 0.5 for p in new["plots"])
    # On by default since its sealed run: recorded in every job, like noise_warp.
    held = SAMPLING_DEFAULTS["still_hold"]
    assert held > 0 and all(p["params"]["still_hold"] == held for p in old["plots"])
    assert [p["frames_sha256"] for p in new["plots"]] != [p["frames_sha256"] for p in old["plots"]]
    again = reproduce_render(calm["render_id"], studio.resolved())
    assert again["identical"] is True
    # noise_share alone turns the default noise_warp off (they correlate the noise one at a time).
    shared = render_story(
        str(story), studio.resolved(), params={**FAST, "noise_share": 0.6}, seed=3, use_ray=False
    )
    params = read_manifest(shared["manifest"])["plots"][0]["params"]
    assert params["noise_share"] == 0.6 and params["noise_warp"] == 0.0


def test_a_render_from_before_the_noise_warp_default_reproduces_at_its_former_value(
    studio: Settings, tmp_path: Path
) -> None:
    """The default noise_warp changed (0 -> 0.8): new renders record it in every job; a manifest
    planned before (no noise_warp anywhere) still reproduces, id and frames, at 0."""
    from story.models.pipeline import FORMER_DEFAULTS, SAMPLING_DEFAULTS

    assert FORMER_DEFAULTS["noise_warp"] != SAMPLING_DEFAULTS["noise_warp"]
    story = story_file(studio)
    now = read_manifest(_render(studio, story, seed=7)["manifest"])
    assert {p["params"]["noise_warp"] for p in now["inputs"]["plots"]} == {
        SAMPLING_DEFAULTS["noise_warp"]
    }
    # Every knob at its value before any default changed, as the code then rendered it.
    at_former = render_story(
        str(story), studio.resolved(), params={**FAST, **FORMER_DEFAULTS}, seed=7, use_ray=False
    )
    assert [p["frames_sha256"] for p in now["plots"]] != [
        p["frames_sha256"] for p in read_manifest(at_former["manifest"])["plots"]
    ]
    # The same render as the code before the change planned it: no changed knob recorded.
    old = _as_planned_before(at_former["folder"], tmp_path / "old-render", list(FORMER_DEFAULTS))
    again = reproduce_render(str(old), studio.resolved())
    assert again["reproduced_id"] == read_manifest(old)["render_id"]
    assert again["identical"] is True


def _as_planned_before(folder: str, old: Path, knobs: list[str]) -> Path:
    """A copy of a finished render whose manifest records none of `knobs`, as the code before
    their defaults changed planned it (its render id recomputed)."""
    from story.tasks.hashing import render_id

    shutil.copytree(folder, old)
    manifest = read_manifest(old)
    inputs = manifest["inputs"]
    for params in [inputs["params"], *(p["params"] for p in inputs["plots"])]:
        for knob in knobs:
            params.pop(knob, None)
    for plot in manifest["plots"]:
        for knob in knobs:
            plot.get("params", {}).pop(knob, None)
    manifest["render_id"] = render_id(inputs)
    (old / "manifest.json").write_text(json.dumps(manifest))
    return old


def _a_later_default_reproduces_at_its_former_value(
    studio: Settings, story: Path, knob: str, now: Any, seed: int, tmp_path: Path
) -> None:
    """New renders record `knob` at its default `now`; a render planned before the default
    changed (noise_warp recorded, `knob` not) reproduces, id and frames, at the former value."""
    from story.models.pipeline import FORMER_DEFAULTS

    latest = read_manifest(_render(studio, story, seed=seed, out=str(tmp_path / "a"))["manifest"])
    assert {p["params"][knob] for p in latest["inputs"]["plots"]} == {now}
    before = render_story(
        str(story),
        studio.resolved(),
        params={**FAST, knob: FORMER_DEFAULTS[knob]},
        seed=seed,
        out=str(tmp_path / "b"),
        use_ray=False,
    )
    assert [p["frames_sha256"] for p in latest["plots"]] != [
        p["frames_sha256"] for p in read_manifest(before["manifest"])["plots"]
    ]
    old = _as_planned_before(before["folder"], tmp_path / "old-render", [knob])
    assert "noise_warp" in read_manifest(old)["inputs"]["plots"][0]["params"]
    again = reproduce_render(str(old), studio.resolved())
    assert again["reproduced_id"] == read_manifest(old)["render_id"]
    assert again["identical"] is True


def test_a_render_from_before_still_hold_reproduces_without_it(studio: Settings, tmp_path: Path):
    """still_hold became the default (cells the retrieved clip holds still are held): a render
    planned before it reproduces with nothing held."""
    from story.models.pipeline import SAMPLING_DEFAULTS

    held = SAMPLING_DEFAULTS["still_hold"]
    _a_later_default_reproduces_at_its_former_value(
        studio, story_file(studio), "still_hold", held, 5, tmp_path
    )


def test_a_render_from_before_deflicker_reproduces_without_the_pass(
    studio: Settings, tmp_path: Path
) -> None:
    """deflicker became the default (the delivered frames calmed along their own motion): a
    render planned before it reproduces, id and frames, with the frames as drawn."""
    from story.models.pipeline import SAMPLING_DEFAULTS

    calm = SAMPLING_DEFAULTS["deflicker"]
    assert calm > 0
    _a_later_default_reproduces_at_its_former_value(
        studio, story_file(studio), "deflicker", calm, 5, tmp_path
    )


def test_a_long_shot_from_before_carry_warp_reproduces_with_noise_drawn_per_window(
    studio: Settings, tmp_path: Path
) -> None:
    """carry_warp became the default (one moving noise for a whole long shot): a long shot
    planned before it reproduces with warped noise drawn per window."""
    story = tmp_path / "long.yaml"
    story.write_text(
        "title: long\nplots:\n  - text: A red ball bounces on the grass\n    frames: 10\n"
    )
    _a_later_default_reproduces_at_its_former_value(studio, story, "carry_warp", True, 3, tmp_path)


def test_a_long_shot_with_hold_prompt_records_renders_and_reproduces_it(
    studio: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hold_prompt (a long shot's still cells keep the previous clip's look across a seam) is a
    TD option: recorded only when set, handed to the continuation with the retrieved frames,
    reproduced. (Its effect on the frames: tests/models/test_still_hold.py.)"""
    import story.tasks.render.synthesize as synthesis

    seen: list[tuple[bool, bool]] = []
    holds: list[bool] = []
    original = synthesis.synthesize

    def spy(*args, **kwargs):
        seen.append((kwargs["continuation"].hold_prompt, kwargs.get("guide_frames") is not None))
        holds.append(kwargs["continuation"].long_hold)
        return original(*args, **kwargs)

    monkeypatch.setattr(synthesis, "synthesize", spy)
    story = tmp_path / "long.yaml"
    story.write_text(
        "title: long\nplots:\n  - text: A red ball bounces on the grass\n    frames: 10\n"
    )
    plain = _render(studio, story, seed=3, out=str(tmp_path / "a"))
    seen.clear()  # (the plain shot may come from the shot cache)
    held = render_story(
        str(story),
        studio.resolved(),
        params={**FAST, "hold_prompt": True},
        seed=3,
        out=str(tmp_path / "b"),
        use_ray=False,
    )
    assert seen == [(True, True)]
    old, new = read_manifest(plain["manifest"]), read_manifest(held["manifest"])
    assert "hold_prompt" not in old["plots"][0]["params"]
    assert new["plots"][0]["params"]["hold_prompt"] is True
    assert new["render_id"] != old["render_id"]
    again = reproduce_render(held["render_id"], studio.resolved())
    assert again["identical"] is True
    assert seen[-1] == (True, True)
    # The hold came off for long shots (long_hold, recorded in every job since); a long shot
    # planned before records none and replays holding, as it was rendered.
    assert old["plots"][0]["params"]["long_hold"] is False
    holds.clear()
    before = _as_planned_before(plain["folder"], tmp_path / "before", ["long_hold"])
    reproduce_render(str(before), studio.resolved())
    assert holds == [True]


def test_rerender_on_another_checkpoint_keeps_clips_and_compares(studio: Settings) -> None:
    story = story_file(studio)
    base = _render(studio, story)
    other = rerender(base["render_id"], "alt", studio.resolved(), use_ray=False)
    assert other["render_id"] != base["render_id"]
    old, new = read_manifest(base["manifest"]), read_manifest(other["manifest"])
    assert [p["clip_id"] for p in old["plots"]] == [p["clip_id"] for p in new["plots"]]
    assert new["inputs"]["checkpoint"]["name"] == "alt"
    page = Path(other["comparison"]).read_text()
    assert base["render_id"] in page and other["render_id"] in page
    assert LineageRegistry(studio.workspace).renders_using("alt") == [other["render_id"]]


def test_candidates_render_side_by_side(studio: Settings, tmp_path: Path) -> None:
    story = story_file(studio)
    summary = _render(studio, story, candidates=2, out=str(tmp_path / "renders"))
    manifest = read_manifest(summary["manifest"])
    assert all(len(p["candidates"]) == 2 for p in manifest["plots"])
    frames = read_mp4(Path(summary["folder"]) / manifest["plots"][0]["video"])
    assert frames.shape[2] >= 2 * 16  # two candidates side by side


@pytest.mark.usefixtures("ray_local")
def test_plots_on_ray_actors_match_in_process(studio: Settings, tmp_path: Path) -> None:
    story = story_file(studio)
    local = _render(studio, story, seed=21, out=str(tmp_path / "a"))
    fresh = Settings(**{**studio.resolved(), "workspace": str(tmp_path / "ws2")})
    shutil.copytree(Path(studio.lancedb), Path(fresh.workspace) / "lancedb")
    remote = _render(fresh, story, seed=21, out=str(tmp_path / "b"), use_ray=True)
    assert remote["render_id"] == local["render_id"]
    a, b = read_manifest(local["manifest"]), read_manifest(remote["manifest"])
    assert [p["frames_sha256"] for p in a["plots"]] == [p["frames_sha256"] for p in b["plots"]]
    assert not any(c["cached"] for p in b["plots"] for c in p["candidates"])


def test_a_story_naming_a_missing_clip_fails_without_a_finished_folder(
    studio: Settings, tmp_path: Path
) -> None:
    story = tmp_path / "pinned.yaml"
    story.write_text("title: t\nplots:\n  - text: a ball\n    clip_id: nope\n")
    out = tmp_path / "renders"
    with pytest.raises(RenderError, match="pinned.yaml:3: plot 0 pins clip 'nope'"):
        _render(studio, story, out=str(out))
    assert not out.exists() or not any(out.iterdir())


def test_a_long_plot_continues_clip_by_clip(studio: Settings, tmp_path: Path) -> None:
    story = tmp_path / "long.yaml"
    story.write_text(
        "title: long\nplots:\n  - text: A red ball bounces on the grass\n    frames: 10\n"
    )
    summary = _render(studio, story, out=str(tmp_path / "renders"))
    manifest = read_manifest(summary["manifest"])
    assert manifest["plots"][0]["frames"] == 10
    assert read_mp4(summary["video"]).shape[0] == 30  # delivered at 24 fps
    assert len(manifest["plots"][0]["frame_indices"]) == 10

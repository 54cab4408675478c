"""The render request: what decides a render, read once; what changes it and what does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from story.models.t2v import random_tiny
from story.tasks.render.jobs import RenderError
from story.tasks.render.request import RenderRequest
from story.tasks.render.request_records import RequestRecords
from story.tasks.script.parse import load_story
from story.tasks.settings import REPO_ROOT, Settings

STORY = (
    "title: Bob\ncharacters:\n  bob: {pack: concepts/bob, class: ball}\nplots:\n  - <bob> rolls\n"
)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("request")
    random_tiny(frames=4, size=16).save_pretrained(root / "checkpoints" / "t2v-tiny")
    shutil.copytree(REPO_ROOT / "checkpoints" / "depth-tiny", root / "checkpoints" / "depth-tiny")
    (root / "story.yaml").write_text(STORY)
    return Settings(workspace=root / "ws", checkpoints=root / "checkpoints")


def _resolve(settings: Settings, **kwargs) -> RenderRequest:
    story = load_story(Path(settings.checkpoints).parent / "story.yaml")
    return RenderRequest.resolve(story, settings, **kwargs)


def test_the_same_request_has_the_same_fingerprint_and_scheduling_does_not_count(
    studio: Settings,
) -> None:
    first = _resolve(studio, seed=3, params={"steps": 2})
    assert first.fingerprint() == _resolve(studio, seed=3, params={"steps": 2}).fingerprint()
    busier = studio.model_copy(update={"ray_workers": 7, "worker_idle_s": 5.0})
    assert _resolve(busier, seed=3, params={"steps": 2}).fingerprint() == first.fingerprint()
    assert first.library_version is None
    assert first.depth["sha256"] and len(first.checkpoint_sha256) == 64

    changed = [
        _resolve(studio, seed=4, params={"steps": 2}),
        _resolve(studio, seed=3, params={"steps": 3}),
        _resolve(studio, seed=3, params={"steps": 2}, candidates=2),
        _resolve(studio.model_copy(update={"fps": 12.0}), seed=3, params={"steps": 2}),
    ]
    prints = [r.fingerprint() for r in changed]
    assert all(p != first.fingerprint() for p in prints)
    assert len({str(p) for p in prints}) == len(prints)


def test_changed_weights_change_the_checkpoint_identity(studio: Settings, tmp_path: Path) -> None:
    settings = studio.model_copy(
        update={"checkpoints": tmp_path / "checkpoints", "workspace": tmp_path / "ws"}
    )
    shutil.copytree(studio.checkpoints, settings.checkpoints)
    shutil.copy(Path(studio.checkpoints).parent / "story.yaml", tmp_path / "story.yaml")
    before = _resolve(settings).checkpoint_sha256
    weights = next((Path(settings.checkpoints) / "t2v-tiny" / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert _resolve(settings).checkpoint_sha256 != before


def test_bad_requests_are_refused_naming_the_problem(studio: Settings) -> None:
    with pytest.raises(RenderError, match=r"checkpoint 'nope': no model at .*nope"):
        _resolve(studio, checkpoint="nope")
    with pytest.raises(RenderError, match="candidates must be >= 1"):
        _resolve(studio, candidates=0)
    request = _resolve(studio)
    assert request.concept_sha256 == {"bob": None}
    with pytest.raises(RenderError, match=r"concept 'bob' has no pack at .*concepts/bob"):
        request.concept_packs()


def test_a_remembered_request_is_answered_only_while_its_render_is_complete(
    studio: Settings, tmp_path: Path
) -> None:
    records = RequestRecords(tmp_path / "ws")
    request = _resolve(studio)
    out = tmp_path / "renders"
    records.remember(out, request, "0123456789abcdef")
    assert records.path(out, request).is_file()
    assert records.find(out, request) is None
    assert records.path(out, request) != records.path(tmp_path / "elsewhere", request)

"""The sealed test ledger: one run per area and model, recorded before it runs."""

from __future__ import annotations

import json

import pytest

from story.tasks.errors import StoryError
from story.tasks.evaluation.sealed import (
    SealedSplitError,
    configuration_id,
    open_sealed_run,
    read_ledger,
)


def test_second_test_run_on_a_model_is_refused_unless_rerun_is_asked(tmp_path) -> None:
    ledger = tmp_path / "sealed.jsonl"
    first = open_sealed_run("synthesis", "t2v-tiny@abc", command=["story", "eval"], path=ledger)
    assert first["rerun"] is False and first["command"] == "story eval"
    with pytest.raises(SealedSplitError, match="already scored.*--rerun-sealed"):
        open_sealed_run("synthesis", "t2v-tiny@abc", path=ledger)
    other_model = open_sealed_run("synthesis", "t2v-64@def", path=ledger)
    other_area = open_sealed_run("concepts", "t2v-tiny@abc", path=ledger)
    again = open_sealed_run("synthesis", "t2v-tiny@abc", rerun=True, path=ledger)
    assert again["rerun"] is True and not other_model["rerun"] and not other_area["rerun"]
    assert [e["model_id"] for e in read_ledger(ledger)] == [
        "t2v-tiny@abc",
        "t2v-64@def",
        "t2v-tiny@abc",
        "t2v-tiny@abc",
    ]


def test_a_damaged_ledger_line_is_named(tmp_path) -> None:
    ledger = tmp_path / "sealed.jsonl"
    ledger.write_text(json.dumps({"area": "a", "model_id": "m"}) + "\n{not json\n")
    with pytest.raises(StoryError, match=r"sealed.jsonl:2"):
        read_ledger(ledger)


def test_an_unfinished_run_is_resumed_by_the_same_command_and_recorded(tmp_path) -> None:
    ledger = tmp_path / "sealed.jsonl"
    run = {"path": ledger, "details": {"scenes": 200}}
    first = open_sealed_run("synthesis", "m@1", resume_key="k1", finished=False, **run)
    assert first["rerun"] is False and first["resume_key"] == "k1"
    resumed = open_sealed_run("synthesis", "m@1", resume_key="k1", finished=False, **run)
    assert resumed["resumed"] is True and "rerun" not in resumed
    # Another configuration or output folder is another look at the test split.
    with pytest.raises(SealedSplitError, match="already scored"):
        open_sealed_run("synthesis", "m@1", resume_key="k2", finished=False, **run)
    # Once the report exists the run is over: the same command again is a re-run.
    with pytest.raises(SealedSplitError, match="already scored"):
        open_sealed_run("synthesis", "m@1", resume_key="k1", finished=True, **run)
    assert [e.get("resumed", False) for e in read_ledger(ledger)] == [False, True]


def test_a_new_default_knob_gets_its_own_sealed_run_but_only_one(tmp_path) -> None:
    ledger = tmp_path / "sealed.jsonl"
    shipped = configuration_id("t2v-64f4@abc", {})
    knob = configuration_id("t2v-64f4@abc", {"noise_warp": 0.8})
    assert shipped == "t2v-64f4@abc" and knob == "t2v-64f4@abc noise_warp=0.8"
    assert configuration_id("m@1", {"tau": 400.0, "detail": 2.0}) == "m@1 detail=2,tau=400"
    open_sealed_run("synthesis", shipped, path=ledger)
    assert open_sealed_run("synthesis", knob, path=ledger)["rerun"] is False
    with pytest.raises(SealedSplitError, match="noise_warp=0.8"):
        open_sealed_run(
            "synthesis", configuration_id("t2v-64f4@abc", {"noise_warp": 0.80}), path=ledger
        )


def test_a_sealed_run_is_named_by_what_it_renders_not_how_the_knobs_were_typed() -> None:
    """After noise_warp's default changed (0 -> 0.8), then still_hold's (0 -> 1), then
    deflicker's (0 -> 0.3), asking for the defaults, or for them by value, is the configuration
    scored as `deflicker=0.3,noise_warp=0.8,still_hold=1`; asking for the former values is scored
    under the bare model id: neither gets a second look at the test split."""
    from story.models.pipeline import FORMER_DEFAULTS, SAMPLING_DEFAULTS
    from story.tasks.evaluation.synthesis_eval import sealed_knobs

    now = {k: SAMPLING_DEFAULTS[k] for k in ("noise_warp", "still_hold", "deflicker")}
    former = {k: FORMER_DEFAULTS[k] for k in now}
    assert sealed_knobs({}) == sealed_knobs(now) == now
    assert sealed_knobs(former) == {}
    assert sealed_knobs({"still_hold": former["still_hold"]}) == {
        "noise_warp": now["noise_warp"],
        "deflicker": now["deflicker"],
    }
    assert sealed_knobs({"noise_share": 0.5, "deflicker": 0.0}) == {
        "noise_share": 0.5,
        "still_hold": now["still_hold"],
    }
    assert sealed_knobs({"tau": 400.0}) == {**now, "tau": 400.0}
    # another guidance scale or step count is another configuration; the evaluation's own
    # (20 DDIM steps, as every sealed run so far, and the product's guidance 4) are not
    assert sealed_knobs({}, 20, SAMPLING_DEFAULTS["guidance"]) == now
    assert sealed_knobs({}, 30, 3.0) == {**now, "steps": 30, "guidance": 3.0}
    scored = {e["model_id"] for e in read_ledger() if e["area"] == "synthesis"}
    before_pass = {"still_hold": 0, "deflicker": 0}
    assert configuration_id("t2v-64f4@5395261700f4", sealed_knobs(before_pass)) in scored
    assert configuration_id("t2v-64f4-v3@1750a96e1214", sealed_knobs({"deflicker": 0})) in scored
    assert configuration_id("t2v-64f4-v3@1750a96e1214", sealed_knobs({})) in scored

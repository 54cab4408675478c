"""The production path as a training run's probe: a snapshot rendered on a few validation plots
the way the product renders them (retrieved clip, estimated depth, a new look, the default
sampling), scored by the judge and paired plot by plot against a stored report of the model the
run started from.

The in-training probe (`curve.probe_row`) samples the scene's true depth with the scene's own
look and none of the product's holds; its flicker gains did not reach the product's path twice
(`docs/training.md`, the clean-units run and phase F), so a run steered by it picks noise. This
costs about as much as that probe (12 plots: 4.5 minutes on both cores) and measures what the
rule decides on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from story.tasks.errors import StoryError
from story.tasks.evaluation.synthesis_compare import compare_reports, load_report

PROBE_METRICS = (
    "warp error",
    "motion magnitude",
    "motion error",
    "object IoU",
    "depth error",
    "object depth error",
    "all six",
)
"""The measures a flicker run's rule reads, in the order its clauses name them."""


def check_reference(path: str | Path) -> None:
    """Refuse a reference that cannot be paired, before a run spends hours training: one that
    is no synthesis report, or one rendered at other sampling than the probe's (the product's
    defaults), which would credit the run with a change of sampling."""
    from story.tasks.evaluation.synthesis_eval import SynthesisEvalConfig, knobs_for

    try:
        report = load_report(path)
    except StoryError as error:
        raise StoryError(f"train_t2v: --production-reference: {error}") from None
    config = report["summary"].get("config")
    if not config:
        return  # a report that does not say its sampling: nothing to check against
    theirs = knobs_for(SynthesisEvalConfig(sampling=config.get("sampling", {})), guided=True)
    ours = knobs_for(SynthesisEvalConfig(), guided=True)
    if theirs != ours:
        differ = sorted(k for k in {*theirs, *ours} if theirs.get(k) != ours.get(k))
        raise StoryError(
            f"train_t2v: --production-reference: {report['_path']} was rendered with "
            + ", ".join(f"{k}={theirs.get(k, 0)}" for k in differ)
            + ", the probe renders the product's defaults ("
            + ", ".join(f"{k}={ours.get(k, 0)}" for k in differ)
            + "): give a report of the starting model at today's defaults"
        )


def production_row(reference: str | Path, report: str | Path) -> dict[str, Any]:
    """The curve's production row: per measure, the run's mean against the reference's on the
    plots both scored, paired (B - A and B / A, 95% intervals)."""
    result = compare_reports(load_report(reference), load_report(report))
    row: dict[str, Any] = {"plots": result["plots"], "reference": str(reference)}
    for metric in PROBE_METRICS:
        cell = result["metrics"].get(metric)
        if cell is None:
            continue
        diff, ratio = cell["b_minus_a"], cell["b_over_a"]
        row[metric] = {
            "reference": cell["a"]["mean"],
            "run": cell["b"]["mean"],
            "difference": [diff["difference"], diff["low"], diff["high"]],
            "ratio": [ratio["ratio"], ratio["low"], ratio["high"]] if ratio else None,
        }
    return row


def production_probe(
    model_folder: str | Path,
    plots: int,
    reference: str | Path,
    threads: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Render and judge `plots` validation plots with the model in `model_folder` (its report in
    `<model_folder>/production`), and pair them against `reference`."""
    from story.tasks.evaluation.synthesis_eval import SynthesisEvalConfig, evaluate_synthesis
    from story.tasks.settings import Settings
    from story.tasks.world import splits

    settings = Settings()
    out = Path(model_folder) / "production"
    config = SynthesisEvalConfig(
        split=splits.VALIDATION,
        checkpoint=str(model_folder),
        scenes=plots,
        seeds=1,
        controlled=False,
        threads=threads,
    )
    evaluate_synthesis(config, out, settings.checkpoints, settings.workspace, log=log)
    return production_row(reference, out)

"""`DepthWorker` as a fan-out worker whose item is a batch of clips (`story.tasks.workers`).

A batch per call lets the worker decode the next clips and write the last one while its model
computes (`DepthWorker.process_batch`); a clip that fails is reported in the batch's results.
"""

from __future__ import annotations

from typing import Any

from story.tasks.structure.depth_step import DepthJob, DepthResult, DepthWorker


class DepthBatchWorker:
    """Builds one `DepthWorker` (same arguments); `process` handles a batch of clips."""

    def __init__(self, **kwargs: Any) -> None:
        self.worker = DepthWorker(**kwargs)

    def process(self, batch: list[DepthJob]) -> list[DepthResult]:
        return self.worker.process_batch(batch)

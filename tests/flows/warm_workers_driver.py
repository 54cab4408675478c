"""One `story`-like process on the cluster at STORY_RAY_ADDRESS: a fan-out on warm workers.

Run as `python -m tests.flows.warm_workers_driver N` (its worker class then travels by value).
Prints one JSON document: the pid that served each of N items.
"""

from __future__ import annotations

import json
import os
import sys


class ReportsPid:
    """Stands for a model worker: answers with the pid of the process that serves it."""

    def process(self, item: int) -> int:
        return os.getpid()


def main(count: int) -> None:
    from story.flows.executors import executor_for
    from story.tasks.settings import Settings
    from story.tasks.workers import WorkerSpec

    executor = executor_for(Settings(), use_ray=True, warm=True, workers=1)
    outcomes = executor.map(WorkerSpec(ReportsPid), range(count))
    print(json.dumps({"pids": sorted({result for _, result, _ in outcomes})}))


if __name__ == "__main__":
    main(int(sys.argv[1]))

"""Register the deployments of `infra/prefect/prefect.yaml` on a studio's Prefect server.

The same file serves a cluster (`prefect deploy`, code at /opt/story in the image) and this
machine: here each deployment's pull step points at this checkout instead, its work pool and
queues are created with the limits the file declares, and schedules stay paused unless asked
for (the file's parameters name the studio's buckets, which a laptop does not have).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from story.tasks.settings import REPO_ROOT

PREFECT_FILE = REPO_ROOT / "infra" / "prefect" / "prefect.yaml"
SET_WORKDIR = "prefect.deployments.steps.set_working_directory"


def read_prefect_file(path: Path = PREFECT_FILE) -> dict[str, Any]:
    """The deployments file, with a clear error when it is missing or not a deployments file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Prefect deployments file")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("deployments"), list):
        raise ValueError(f"{path}: not a Prefect deployments file (no `deployments:` list)")
    return config


def work_queue_limits(config: dict[str, Any]) -> dict[str, dict[str, int | None]]:
    """{pool: {queue: concurrency limit}} for every queue a deployment of the file uses."""
    declared = config.get("definitions", {}).get("work_queue_limits", {})
    queues: dict[str, dict[str, int | None]] = {}
    for deployment in config["deployments"]:
        pool = deployment["work_pool"]
        name = pool.get("work_queue_name") or "default"
        queues.setdefault(pool["name"], {})[name] = declared.get(name)
    return queues


def ensure_work_pools(client: Any, config: dict[str, Any]) -> dict[str, dict[str, int | None]]:
    """Create each process work pool and its queues (with their limits); idempotent."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    queues = work_queue_limits(config)
    for pool, limits in queues.items():
        template = ProcessWorker.get_default_base_job_template()
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(
                WorkPoolCreate(name=pool, type=ProcessWorker.type, base_job_template=template)
            )
        for name, limit in limits.items():
            try:
                client.create_work_queue(name=name, work_pool_name=pool, concurrency_limit=limit)
            except ObjectAlreadyExists:
                queue = client.read_work_queue_by_name(name, work_pool_name=pool)
                client.update_work_queue(queue.id, concurrency_limit=limit)
    return queues


def _schedule(entry: dict[str, Any], activate: bool) -> Any:
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    timezone = entry.get("timezone", "UTC")
    if "cron" in entry:
        schedule: Any = CronSchedule(cron=entry["cron"], timezone=timezone)
    elif "interval" in entry:
        schedule = IntervalSchedule(
            interval=timedelta(seconds=entry["interval"]), timezone=timezone
        )
    else:
        raise ValueError(f"schedule {entry}: only `cron` and `interval` schedules are supported")
    return DeploymentScheduleCreate(
        schedule=schedule, active=activate and entry.get("active", True)
    )


def register_deployments(
    client: Any,
    path: Path = PREFECT_FILE,
    code_dir: Path = REPO_ROOT,
    activate_schedules: bool = False,
) -> list[dict[str, Any]]:
    """Create or replace every deployment of `path` with its code at `code_dir`; one row each
    (name, id, work pool and queue, schedules active)."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    config = read_prefect_file(path)
    ensure_work_pools(client, config)
    rows = []
    for entry in config["deployments"]:
        file, _, function = entry["entrypoint"].partition(":")
        flow = load_flow_from_entrypoint(f"{code_dir / file}:{function}")
        flow_id = client.create_flow_from_name(flow.name)
        schedules = [_schedule(s, activate_schedules) for s in entry.get("schedules") or ()]
        pool = entry["work_pool"]
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=entry["name"],
            description=entry.get("description"),
            entrypoint=entry["entrypoint"],
            path=str(code_dir),
            pull_steps=[{SET_WORKDIR: {"directory": str(code_dir)}}],
            parameters=entry.get("parameters") or {},
            parameter_openapi_schema=parameter_schema(flow).model_dump_for_openapi(),
            enforce_parameter_schema=False,
            work_pool_name=pool["name"],
            work_queue_name=pool.get("work_queue_name") or "default",
            tags=entry.get("tags") or [],
            schedules=schedules,
            concurrency_limit=entry.get("concurrency_limit"),
        )
        rows.append(
            {
                "deployment": f"{flow.name}/{entry['name']}",
                "id": str(deployment_id),
                "work_pool": pool["name"],
                "work_queue": pool.get("work_queue_name") or "default",
                "schedules_active": any(s.active for s in schedules),
            }
        )
    return rows

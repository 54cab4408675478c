"""The Ray connection and the actor options every executor shares, Ray's own retries included.

An actor that dies (OOM kill, segfault) is restarted by Ray up to `MAX_RESTARTS` times over its
life, and the call it was running is retried on the restarted actor up to `MAX_TASK_RETRIES`
times; an application error in a call is never retried (it would fail again).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from story.tasks.settings import Settings
from story.tasks.workers import WorkerSpec

MAX_RESTARTS = 2
MAX_TASK_RETRIES = 2
RESTART_WAIT_S = 120.0
LOOPBACK = "127.0.0.1"
# Ray turns a 127.0.0.1 node address into the host's routable IP unless this is "0".
SINGLE_HOST_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_options() -> dict[str, str]:
    """`ray.init` options that keep a local single-node Ray on 127.0.0.1 only.

    Ray 2.60's GCS, raylet and worker gRPC servers listen on loopback only when the node IP
    is 127.0.0.1, which it accepts only with SINGLE_HOST_ENV=0 (read at import, and inherited
    by the processes Ray starts, so it is set both in the environment and on the loaded module).
    """
    os.environ[SINGLE_HOST_ENV] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    return {"_node_ip_address": LOOPBACK}


def ensure_ray(settings: Settings) -> None:
    """Connect to the configured cluster, or start one local Ray on loopback (once per process)."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "ignore_reinit_error": True,
        "configure_logging": False,
    }
    if settings.ray_address:
        ray.init(address=settings.ray_address, **kwargs)
    else:
        ray.init(num_cpus=max(settings.ray_workers, 1), **loopback_options(), **kwargs)


def cluster_gpus() -> float:
    """GPUs the connected cluster offers (0 on a CPU-only cluster)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def actor_options(num_cpus: float = 1.0, want_gpu: bool = True) -> dict[str, Any]:
    """Actor resources (one GPU each only where the cluster has GPUs) and Ray's retries."""
    options: dict[str, Any] = {
        "num_cpus": num_cpus,
        "max_restarts": MAX_RESTARTS,
        "max_task_retries": MAX_TASK_RETRIES,
    }
    if want_gpu and cluster_gpus() >= 1:
        options["num_gpus"] = 1
    return options


def spec_options(spec: WorkerSpec[Any, Any], num_cpus: float) -> dict[str, Any]:
    """The actor options of one worker of `spec` holding `num_cpus` CPUs."""
    return actor_options(num_cpus=num_cpus, want_gpu=spec.gpu)


def resources(options: dict[str, Any]) -> dict[str, float]:
    """CPU and GPU an actor made with `options` holds."""
    return {"CPU": float(options.get("num_cpus", 1.0)), "GPU": float(options.get("num_gpus", 0))}


def session() -> tuple[str, str]:
    """This driver's (node id, job id): a new Ray session gets a new pair."""
    import ray

    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id()


def ask(call: Callable[[], Any], wait_s: float = RESTART_WAIT_S) -> Any:
    """`ray.get` of an actor call, waiting out a restart (a restarting actor refuses calls)."""
    import ray
    from ray.exceptions import ActorUnavailableError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ray.get(call(), timeout=wait_s)
        except ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def alive(handle: Any) -> bool:
    """True once the actor answers (after a restart); False when it is dead for good."""
    from ray.exceptions import GetTimeoutError, RayActorError

    try:
        ask(handle.__ray_ready__.remote)
    except (RayActorError, GetTimeoutError):
        return False
    return True

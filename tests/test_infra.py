"""infra/: the cluster, deployment and container files agree with the code they run."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import yaml

from story.tasks.settings import Settings

INFRA = Path(__file__).resolve().parent.parent / "infra"


def test_ray_cluster_config_is_valid_for_ray_up() -> None:
    import jsonschema
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).with_name("ray-schema.json")
    config = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    assert config["head_node_type"] in config["available_node_types"]
    assert "--gpus all" in config["docker"]["worker_run_options"]


def test_kuberay_worker_group_requests_gpus() -> None:
    docs = list(yaml.safe_load_all((INFRA / "kuberay" / "raycluster.yaml").read_text()))
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    gpu = next(g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert cluster["spec"]["rayVersion"].startswith("2.60")


def test_prefect_deployments_point_at_real_flows_with_real_parameters() -> None:
    from prefect.flows import load_flow_from_entrypoint

    config = yaml.safe_load((INFRA / "prefect" / "prefect.yaml").read_text())
    deployments = config["deployments"]
    assert {d["entrypoint"].rsplit(":", 1)[1] for d in deployments} == {
        "build_index",
        "ingest_new",
        "precompute_depth",
        "rerender_affected",
        "render_story",
        "rerender",
    }
    for deployment in deployments:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment["parameters"]) <= accepted, deployment["name"]
        # Library and structure jobs run on schedules; renders are queued on demand.
        assert deployment.get("schedules") or "renders" in deployment["tags"], deployment["name"]
        assert deployment["work_pool"]["name"] == "story-ray"
    assert len({d["name"] for d in deployments}) == len(deployments)


def test_every_story_variable_in_infra_is_a_setting() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    text = "\n".join(p.read_text() for p in INFRA.rglob("*") if p.is_file())
    used = set(re.findall(r"\bSTORY_([A-Z_]+)", text))
    assert used, "no STORY_* settings found under infra/"
    assert used <= fields, sorted(used - fields)

"""Run `build_index` against a Ray cluster given by STORY_RAY_ADDRESS; print where actors ran.

Run in its own process (`python -m tests.flows.multinode_driver MANIFEST WORKSPACE`) because a
test process may already own a local Ray. Prints one JSON document: the flow summary, the node
of every `ClipIngestor` actor the run created, and the cluster's alive node ids.
"""

from __future__ import annotations

import json
import sys


def main(manifest: str, workspace: str) -> None:
    import ray
    import ray._private.state as ray_state

    from story.flows.build_index import build_index
    from story.tasks.settings import Settings

    settings = Settings(workspace=workspace, shard_size=2, ray_workers=2)
    summary = build_index(manifest, settings.resolved(), use_ray=True)
    actors = [
        a
        for a in ray_state.actors().values()
        if a.get("ActorClassName", "").endswith("ClipIngestor")
    ]
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    print(
        json.dumps(
            {
                "summary": summary,
                "actor_nodes": sorted(a["Address"]["NodeID"] for a in actors),
                "alive_nodes": sorted(nodes),
                "address": settings.ray_address,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

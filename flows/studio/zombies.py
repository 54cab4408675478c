"""Runs whose process died (worker killed, machine lost) are marked Crashed by the server.

Flow runs started by the studio's worker send a heartbeat every HEARTBEAT_S seconds
(PREFECT_FLOWS_HEARTBEAT_FREQUENCY in the worker's environment); this automation, Prefect's
documented zombie detector, crashes a run whose heartbeats stop without a final state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

AUTOMATION = "story: crash runs that stopped sending heartbeats"
HEARTBEAT_S = 30
SILENCE_S = 90


def ensure_zombie_automation(client: Any) -> str:
    """Create (or replace) the automation on the server; its id."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    for old in client.read_automations_by_name(AUTOMATION):
        client.delete_automation(old.id)
    automation = Automation(
        name=AUTOMATION,
        trigger=EventTrigger(
            # Armed by Running too: a run killed before its first heartbeat is caught as well.
            after={"prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            # Only deployment runs, which the worker starts with HEARTBEAT_S; a flow run in a
            # CLI process beats at Prefect's default (180 s) and must not be taken for dead.
            match_related=ResourceSpecification({"prefect.resource.role": "deployment"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=SILENCE_S),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {SILENCE_S} s: the run's process is gone "
                "(worker killed or machine lost). Submit it again.",
            )
        ],
    )
    return str(automation.create().id)

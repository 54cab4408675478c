"""Items over a set of Ray actors: one call in flight per actor, outcomes as they complete.

Ray restarts a dead actor and retries its call (`ray_session`), so no retry loop lives here.
A worker's own exception comes back as itself, as it would in-process.
A call that still fails because its actor is dead for good (restarts spent) is that item's
error; the actor takes no more items and is reported in `dead`. If every actor is dead, the
items left fail with the same error.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from story.tasks.workers import Outcome

ActorT = TypeVar("ActorT")


def dispatch(
    actors: list[ActorT],
    submit: Callable[[ActorT, Any], Any],
    items: Iterable[Any],
    dead: list[ActorT],
) -> Iterator[Outcome[Any, Any]]:
    """Run `items` on `actors` (`submit(actor, item)` returns an ObjectRef); dead ones go to
    `dead`."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    idle = list(actors)
    queue = deque(items)
    in_flight: dict[Any, tuple[Any, ActorT]] = {}
    last_death: BaseException | None = None
    while queue or in_flight:
        while queue and idle:
            item = queue.popleft()
            actor = idle.pop(0)
            in_flight[submit(actor, item)] = (item, actor)
        if not in_flight:
            for item in queue:
                yield Outcome(item, None, last_death)
            return
        done, _ = ray.wait(list(in_flight), num_returns=1)
        item, actor = in_flight.pop(done[0])
        try:
            result = ray.get(done[0])
        except RayTaskError as exc:
            idle.append(actor)
            yield Outcome(item, None, _cause(exc))
        except (RayActorError, WorkerCrashedError) as exc:
            last_death = exc
            dead.append(actor)
            yield Outcome(item, None, exc)
        else:
            idle.append(actor)
            yield Outcome(item, result, None)


def _cause(exc: Any) -> BaseException:
    """The worker's own exception (same type and message as in-process), when Ray kept it."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc.as_instanceof_cause()

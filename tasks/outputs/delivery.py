"""Delivery rate: the editorial frame rate a render is delivered at, and where plots fall on it.

The model generates frames at its own rate (settings.fps, 8 by default). Editorial runs at
23.976 / 24 / 25 / 30 fps, so every render is also delivered at one of those rates. A plot keeps
the duration the story asked for: its cut points are the model-time cuts rounded to the nearest
delivered frame on the story's running time, so no drift accumulates over a story, and each
delivered frame samples the model frames at its own time (held or interpolated, `retime.py`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from story.tasks.outputs.errors import AssemblyError

if TYPE_CHECKING:  # numpy is imported where it is used: the settings read this module
    import numpy as np

RATES: dict[str, Fraction] = {
    "23.976": Fraction(24000, 1001),
    "24": Fraction(24),
    "25": Fraction(25),
    "30": Fraction(30),
}
DEFAULT_RATE = "24"
RETIME_METHODS = ("hold", "blend", "flow")
DEFAULT_RETIME = "flow"
"""Chosen by measurement (bench/bench_retime.py, docs/editorial.md)."""


class DeliveryError(AssemblyError, ValueError):
    """A delivery rate or retime method that is not one of the choices."""


def normalize_rate(value: Any) -> str:
    """A delivery rate's canonical name ("23.976", "24", "25", "30") from a name or number."""
    text = str(value).strip()
    if text in RATES:
        return text
    try:
        number = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        number = math.nan
    for name, rate in RATES.items():
        if abs(number - float(rate)) < 0.006:
            return name
    raise DeliveryError(f"delivery rate {value!r}: one of {', '.join(RATES)} fps")


def check_retime(method: str) -> str:
    """`method` when it is a retime method, else DeliveryError naming the choices."""
    if method not in RETIME_METHODS:
        raise DeliveryError(f"retime method {method!r}: one of {', '.join(RETIME_METHODS)}")
    return method


@dataclass(frozen=True)
class Delivery:
    """The rate a render is delivered at and how model frames are brought to it."""

    rate: str = DEFAULT_RATE
    retime: str = DEFAULT_RETIME

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", normalize_rate(self.rate))
        if self.retime not in RETIME_METHODS:
            raise AssemblyError(
                f"retime method {self.retime!r}: one of {', '.join(RETIME_METHODS)}"
            )

    @property
    def fps(self) -> Fraction:
        """The exact rate (24000/1001 for 23.976)."""
        return RATES[self.rate]

    def record(self) -> dict[str, str]:
        """What the manifest records (and the render id hashes)."""
        return {
            "rate": self.rate,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}",
            "retime": self.retime,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> Delivery:
        """The delivery a manifest recorded; renders from before delivery rates existed were
        never retimed, so they read as the default."""
        if not record:
            return cls()
        return cls(rate=str(record["rate"]), retime=str(record["retime"]))

    @classmethod
    def from_settings(cls, settings: Any) -> Delivery:
        """The delivery a settings object asks for (`delivery_rate`, `retime`)."""
        return cls(rate=settings.delivery_rate, retime=settings.retime)


def with_recorded_delivery(settings: Any, manifest: Mapping[str, Any]) -> Any:
    """Settings that deliver the way a manifest recorded, for reproducing or re-rendering it
    (renders made before delivery rates read as the default)."""
    delivery = Delivery.from_record(manifest.get("inputs", {}).get("delivery"))
    return settings.model_copy(update={"delivery_rate": delivery.rate, "retime": delivery.retime})


def _nearest(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def delivered_spans(
    frame_counts: Sequence[int], model_fps: float | Fraction, fps: Fraction
) -> list[tuple[int, int]]:
    """Each plot's [first, end) delivered frame on the story's timeline.

    Cuts sit at the model-time cuts rounded to the nearest delivered frame, so a story's total
    never drifts by more than half a frame; every plot keeps at least one frame.
    """
    model = Fraction(model_fps).limit_denominator(1001)
    if model <= 0 or any(n < 1 for n in frame_counts):
        raise AssemblyError(f"cannot deliver {list(frame_counts)} frames at {model_fps} fps")
    spans = []
    first, before = 0, 0
    for count in frame_counts:
        before += count
        end = max(first + 1, _nearest(before * fps / model))
        spans.append((first, end))
        first = end
    return spans


def source_positions(
    span: tuple[int, int],
    frames_before: int,
    frame_count: int,
    model_fps: float | Fraction,
    fps: Fraction,
) -> np.ndarray:
    """For each delivered frame of a plot, the (fractional) model frame at its time.

    Positions outside the plot's frames (the last delivered frames of a plot end after its last
    model frame starts) are clamped, so the ends hold.
    """
    import numpy as np

    model = Fraction(model_fps).limit_denominator(1001)
    first, end = span
    positions = [float(Fraction(j) * model / fps - frames_before) for j in range(first, end)]
    return np.clip(np.asarray(positions, dtype=np.float64), 0.0, frame_count - 1)

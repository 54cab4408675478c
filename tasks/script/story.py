"""The story model: a story's characters and its plots (one shot each), and the script's limits.

A plot's *query* says what motion and layout to retrieve; its *prompt* says what the shot should
look like, with concept tokens such as `<bob>` naming characters. `Story.to_dict` is what
manifests store and `Story.content_hash` is what render ids pin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_json

STRUCTURES = ("depth", "edges", "motion")
MAX_PLOTS = 1000
MAX_TEXT_CHARS = 2000
MAX_SEED = 2**63 - 1
MAX_TAU = 1000.0
DEFAULT_CLASS = "object"
"""The class word of a character declared without one."""

CONCEPT = re.compile(r"<([A-Za-z_][A-Za-z0-9_-]{0,63})>")
"""A concept token in plot text: `<name>`."""


class StoryScriptError(StoryError):
    """A story script is unusable: names the file, the line (0 = the file as a whole) and why."""

    def __init__(self, path: str | Path, line: int, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{self.path}:{line}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.line, self.problem))


@dataclass(frozen=True)
class Plot:
    """One shot of the story."""

    index: int
    text: str
    query: str
    prompt: str
    frames: int | None = None
    seed: int | None = None
    tau: float | None = None
    structure: str = "depth"
    clip_id: str | None = None
    characters: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Story:
    """A parsed story: its characters (name -> concept pack ref) and its plots in order."""

    title: str
    characters: dict[str, str]
    plots: tuple[Plot, ...]
    source: str
    fmt: str
    character_classes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly form (manifests store it; `from_dict` reads it back)."""
        return {
            "title": self.title,
            "characters": dict(self.characters),
            "character_classes": dict(self.character_classes),
            "plots": [{**asdict(p), "characters": list(p.characters)} for p in self.plots],
            "source": self.source,
            "fmt": self.fmt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Story:
        """Inverse of `to_dict`; a malformed dict raises StoryScriptError."""
        source = str(data.get("source", "<dict>")) if isinstance(data, Mapping) else "<dict>"
        try:
            plots = tuple(
                Plot(**{**p, "characters": tuple(p.get("characters", ()))}) for p in data["plots"]
            )
            return cls(
                title=str(data["title"]),
                characters=dict(data["characters"]),
                plots=plots,
                source=source,
                fmt=str(data["fmt"]),
                character_classes=dict(data.get("character_classes", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoryScriptError(source, 0, f"not a story record: {exc!r}") from exc

    def content_hash(self) -> str:
        """Hash of what the story says (not where it was read from): part of the render id."""
        data = self.to_dict()
        data.pop("source")
        for plot in data["plots"]:
            plot.pop("line")
        return sha256_json(data)


def effective_seed(plot: Plot, base_seed: int) -> int:
    """The plot's own seed, else one derived from the render's base seed and the plot index."""
    if plot.seed is not None:
        return plot.seed
    return int(sha256_json({"seed": base_seed, "plot": plot.index})[:15], 16)

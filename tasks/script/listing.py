"""What `story plots FILE --json` prints: the split with its derived query and prompt per plot.

The CLI's view of a parsed story, kept out of the parser so the command can own its format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from story.tasks.script.parse import load_story
from story.tasks.script.to_yaml import story_to_yaml


def plots_listing(path: str | Path, *, max_frames: int = 256) -> dict[str, Any]:
    """What `story plots FILE --json` prints: the split with derived query/prompt per plot."""
    story = load_story(path, max_frames=max_frames)
    return {
        "source": story.source,
        "format": story.fmt,
        "title": story.title,
        "characters": dict(story.characters),
        "plots": [
            {
                "index": plot.index,
                "line": plot.line,
                "text": plot.text,
                "query": plot.query,
                "prompt": plot.prompt,
                "characters": list(plot.characters),
                "frames": plot.frames,
                "seed": plot.seed,
                "tau": plot.tau,
                "structure": plot.structure,
                "clip_id": plot.clip_id,
            }
            for plot in story.plots
        ],
        "yaml": story_to_yaml(story),
    }

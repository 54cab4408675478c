"""A story written back as an editable YAML script (what `story plots` shows)."""

from __future__ import annotations

from typing import Any

import yaml

from story.tasks.script.story import Story


def story_to_yaml(story: Story) -> str:
    """The story as an editable YAML script (what `story plots` shows)."""
    characters: dict[str, Any] = {
        name: {"pack": pack, "class": story.character_classes[name]}
        if name in story.character_classes
        else pack
        for name, pack in story.characters.items()
    }
    plots = []
    for plot in story.plots:
        entry: dict[str, Any] = {"text": plot.text, "query": plot.query, "prompt": plot.prompt}
        for key in ("frames", "seed", "tau", "clip_id"):
            if getattr(plot, key) is not None:
                entry[key] = getattr(plot, key)
        if plot.structure != "depth":
            entry["structure"] = plot.structure
        plots.append(entry)
    document: dict[str, Any] = {"title": story.title}
    if characters:
        document["characters"] = characters
    document["plots"] = plots
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)

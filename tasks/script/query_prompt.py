"""A plot's retrieval query and render prompt, derived from its text when the script omits them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from story.tasks.script.story import CONCEPT, DEFAULT_CLASS
from story.tasks.script.vocabulary import APPEARANCE, split_words


def derive_query_prompt(
    plot_text: str, characters: Mapping[str, str] | Iterable[str] | None = None
) -> tuple[str, str]:
    """(query, prompt) from plot text.

    The query keeps motion and layout: appearance words (colours, patterns, materials) are
    dropped and each `<name>` becomes its class word (`characters` maps name -> class word;
    a plain list of names uses "object"); 'a <bob> ball' keeps just 'a ball'. The prompt is the
    text itself with its concept tokens.
    """
    classes = dict(characters) if isinstance(characters, Mapping) else {}
    prompt = re.sub(r"\s+", " ", plot_text).strip()
    words = split_words(prompt)
    kept: list[str] = []
    for i, word in enumerate(words):
        concept = CONCEPT.fullmatch(word)
        if concept:
            cls = classes.get(concept.group(1), DEFAULT_CLASS)
            following = words[i + 1].lower() if i + 1 < len(words) else ""
            if following != cls.lower():
                kept.append(cls)
            continue
        if word.lower() in APPEARANCE:
            continue
        kept.append(word.lower())
    for i in range(len(kept) - 1):
        if kept[i] in {"a", "an"}:
            kept[i] = "an" if kept[i + 1][:1] in "aeiou" else "a"
    return " ".join(kept) or prompt.lower(), prompt

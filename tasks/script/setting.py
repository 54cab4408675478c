"""The setting that holds across plots: the story's place and each character's look.

A story says where it happens once ("A red cube slides on the kitchen floor.") and the next
sentences leave it out ("The cube stops."). Rendered plot by plot, the second prompt would name
no ground and no colour, so the model would draw any. `Setting` reads the plots in order and
gives a derived prompt the place last named (as "on/in/at the ...") when it names none, and a
character's look words when it is mentioned again without them ("The red cube stops on the
kitchen floor"). Prompts a script writes out are left exactly as written, but still update the
setting for the plots after them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from story.tasks.script.story import CONCEPT
from story.tasks.script.vocabulary import APPEARANCE, DETERMINERS, PREPOSITIONS, WORD, is_verb


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


PLACE_NOUNS = _words(
    "floor ground grass lawn field meadow grassland sand beach desert dunes snow snowfield "
    "ice road street path track table carpet rug kitchen room hall yard garden park court "
    "stage deck dusk sunset evening twilight night hill hillside shore pavement sidewalk "
    "playground tiles lake river forest mud"
)
"""Nouns that name where a shot happens (its ground or time of day)."""
PLACE_PREPOSITIONS = _words("on onto in into at across over along through")
MAX_PLACE_WORDS = 4
"""Words between a place preposition and its place noun ("on the old wooden kitchen floor")."""


def _carried_preposition(preposition: str) -> str:
    """How a carried place is said: 'at dusk', 'in the snow', else 'on the ...'."""
    if preposition == "at":
        return "at"
    return "in" if preposition in {"in", "into", "through"} else "on"


def _definite(words: list[str]) -> list[str]:
    if words and words[0].lower() in {"a", "an", "one", "some"}:
        return ["the", *words[1:]]
    return words


def find_place(text: str) -> str | None:
    """The last place phrase of a plot text, as it would be carried ('on the kitchen floor')."""
    words = [m.group(0) for m in WORD.finditer(text)]
    found = None
    for i, word in enumerate(words):
        if word.lower() not in PLACE_PREPOSITIONS:
            continue
        end = None
        for j in range(i + 1, min(i + 2 + MAX_PLACE_WORDS, len(words))):
            lower = words[j].lower()
            if lower in PREPOSITIONS or is_verb(lower) or CONCEPT.fullmatch(words[j]):
                break
            if lower in PLACE_NOUNS:
                end = j + 1
        if end is not None:
            phrase = _definite(words[i + 1 : end])
            found = " ".join([_carried_preposition(word.lower()), *phrase])
    return found


@dataclass
class Setting:
    """The place and the characters' looks so far; `prompt` carries them into the next plot."""

    place: str | None = None
    looks: dict[str, list[str]] = field(default_factory=dict)

    def _with_looks(self, text: str) -> str:
        """Insert a known look after a determiner whose noun is mentioned without one."""
        spans = list(WORD.finditer(text))
        out, last = [], 0
        for k, span in enumerate(spans[:-1]):
            if span.group(0).lower() not in DETERMINERS:
                continue
            following = spans[k + 1]
            look = self.looks.get(following.group(0).lower())
            if look:
                out.append(text[last : following.start()] + " ".join(look) + " ")
                last = following.start()
        return "".join(out) + text[last:]

    def _learn_looks(self, text: str) -> None:
        words = [m.group(0) for m in WORD.finditer(text)]
        for i, word in enumerate(words):
            if word.lower() not in DETERMINERS:
                continue
            j = i + 1
            while j < len(words) and words[j].lower() in APPEARANCE:
                j += 1
            if j > i + 1 and j < len(words) and not CONCEPT.fullmatch(words[j]):
                self.looks[words[j].lower()] = words[i + 1 : j]

    def prompt(self, text: str, written: str | None = None) -> str:
        """The prompt of the next plot: `written` as is, else `text` with the setting carried."""
        source = written if written is not None else text
        own_place = find_place(source)
        if written is not None:
            prompt = written
        else:
            prompt = self._with_looks(text)
            if own_place is None and self.place is not None:
                prompt = f"{prompt.rstrip(' .')} {self.place}"
        self._learn_looks(source)
        if own_place is not None:
            self.place = own_place
        return prompt

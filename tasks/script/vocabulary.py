"""The English the story parser knows: function words, appearance words and verb forms.

Prose splitting needs to find verbs and noun phrases, and query derivation drops appearance
words (colours, patterns, materials) so a query keeps only motion and layout. The lists are the
product's own; the miniature world's scene grammar may draw on them, never the other way round.
"""

from __future__ import annotations

import re


def _lexicon(words: str) -> frozenset[str]:
    return frozenset(words.split())


WORD = re.compile(r"<[A-Za-z_][A-Za-z0-9_-]*>|[A-Za-z0-9][A-Za-z0-9'’-]*")
"""A word of plot text: a `<concept>` token or a run of letters, digits, apostrophes, hyphens."""

DETERMINERS = _lexicon(
    "a an the this that these those his her its their my your our one two three some"
)
SUBJECT_PRONOUNS = frozenset({"he", "she", "it", "they"})
OBJECT_PRONOUNS = frozenset({"it", "him", "them"})
PREPOSITIONS = _lexicon(
    "over across on onto in into through along past toward towards to from under around behind "
    "near by at with up down off out of above below beside between after before while"
)
DIRECTIONS = _lexicon(
    "left right forward forwards backward backwards away closer back upward downward "
    "clockwise counterclockwise sideways home"
)
LEADING_CONNECTIVES = _lexicon("and then next finally afterwards later so")

COLOURS = _lexicon(
    "red orange yellow green blue purple violet pink brown black white grey gray golden silver "
    "cyan magenta teal dark-red light-blue dark-blue crimson scarlet emerald azure cobalt lemon "
    "gold tangerine ivory ebony jet-black lilac"
)
PATTERNS = _lexicon(
    "striped stripy stripe stripes banded dotted dots spotted spots polka-dot checkered checked "
    "chequered checker checkers checkerboard chequerboard plaid patterned painted plain solid "
    "solid-coloured untextured uniform coloured colored colorful colourful"
)
MATERIALS = _lexicon(
    "shiny glossy matte metallic wooden glass plastic rubber furry fluffy sparkly glowing "
    "bright pale"
)
APPEARANCE = COLOURS | PATTERNS | MATERIALS
"""Words that say how something looks, not how it moves: dropped from derived queries."""

_VERB_BASES = _lexicon(
    "roll bounce jump run walk fly slide spin turn move meet kill chase find see sit stop fall "
    "rise go come enter leave hop glide drift float sink swim climb push pull hit follow circle "
    "orbit approach appear vanish disappear rest wait look watch pass cross race dash tumble "
    "wobble zoom shake grow shrink play kick catch throw drop land return sleep wake eat greet "
    "hide reach stand lie dance fight carry touch break open close flee escape arrive start "
    "begin continue become get rotate travel crawl sail speed bump hover dive skid swerve "
    "wander head stay linger pause settle emerge recede pan hold"
)
_IRREGULAR = _lexicon(
    "met ran flew flown saw seen sat fell fallen rose risen went gone came found caught threw "
    "thrown stood lay lain slept woke woken ate eaten hid hidden fought broke broken fled began "
    "begun became got gotten swam swum sank sunk grew grown shook shaken spun slid rode driven "
    "drove took taken gave given made struck is are was were sped"
)
_DOUBLING = _lexicon("stop hop drop run swim spin hit skid grab bob jog nod plan")


def inflections(base: str) -> set[str]:
    """Base, third person, past and -ing forms of a regular verb."""
    forms = {base}
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        forms.add(base + "es")
    elif base.endswith("y") and base[-2:-1] not in "aeiou":
        forms.add(base[:-1] + "ies")
    else:
        forms.add(base + "s")
    stem = base + base[-1] if base in _DOUBLING else base
    if base.endswith("e"):
        forms.update({base + "d", base[:-1] + "ing"})
    elif base.endswith("y") and base[-2:-1] not in "aeiou":
        forms.update({base[:-1] + "ied", base + "ing"})
    else:
        forms.update({stem + "ed", stem + "ing"})
    return forms


VERBS = frozenset(form for base in _VERB_BASES for form in inflections(base)) | _IRREGULAR


def is_verb(word: str) -> bool:
    """A known verb form, or an unknown word ending in -ed that is not an appearance word."""
    low = word.lower()
    if low in VERBS:
        return True
    return (
        len(low) >= 5
        and low.endswith("ed")
        and not low.endswith("eed")
        and low not in APPEARANCE
        and low not in DIRECTIONS
    )


def split_words(text: str) -> list[str]:
    """The words of `text`, in order (see `WORD`)."""
    return WORD.findall(text)

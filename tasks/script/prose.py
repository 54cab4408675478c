"""Prose to plots by rule: sentences -> clauses -> single-event plots, pronouns resolved.

"A boy met a wolf and killed it." gives "A boy met a wolf" and "The boy killed the wolf", each
with the source line it starts on, so errors and the storyboard can point back at the text.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from story.tasks.script.story import MAX_TEXT_CHARS
from story.tasks.script.vocabulary import (
    DETERMINERS,
    DIRECTIONS,
    LEADING_CONNECTIVES,
    OBJECT_PRONOUNS,
    PREPOSITIONS,
    SUBJECT_PRONOUNS,
    WORD,
    is_verb,
    split_words,
)


def _definite(phrase: str) -> str:
    """'a wolf' -> 'the wolf': a second mention of something already introduced."""
    words = phrase.split()
    if words and words[0].lower() in {"a", "an", "one", "some"}:
        return " ".join(["the", *words[1:]])
    return phrase


@dataclass
class _Clause:
    text: str
    offset: int


@dataclass
class _Referents:
    subject: str | None = None
    entities: tuple[str, ...] = ()

    def other_than(self, subject: str | None) -> str | None:
        """The latest mentioned thing that is not the clause's own subject."""
        own = _definite(subject or "").lower()
        return next((e for e in reversed(self.entities) if _definite(e).lower() != own), None)


def _has_verb(text: str) -> bool:
    return any(is_verb(w) for w in split_words(text))


def _starts_with_verb(text: str) -> bool:
    words = split_words(text)
    return bool(words) and is_verb(words[0])


_CANDIDATE_SPLIT = re.compile(
    r"(?P<hard>;|,\s*(?:and\s+)?then\s+|\s+and\s+then\s+|\s+then\s+)|(?P<soft>,\s*and\s+|\s+and\s+|,\s+)",
    re.IGNORECASE,
)


def _split_clauses(sentence: str, offset: int) -> list[_Clause]:
    """Cut a sentence at 'then' / ';' always, and at 'and' / ',' when both sides are events."""
    cuts: list[tuple[int, int, bool]] = [
        (m.start(), m.end(), m.group("hard") is not None)
        for m in _CANDIDATE_SPLIT.finditer(sentence)
    ]
    starts = [c[0] for c in cuts]
    long_sentence = len(sentence) > MAX_TEXT_CHARS
    clauses: list[_Clause] = []
    start = 0
    for cut_start, cut_end, hard in cuts:
        if cut_start < start or (long_sentence and not hard):
            continue
        if not hard:
            left = sentence[start:cut_start]
            following = bisect.bisect_left(starts, cut_end)
            right = sentence[cut_end : starts[following] if following < len(starts) else None]
            if not (_has_verb(left) and (_starts_with_verb(right) or _has_verb(right))):
                continue
        if not sentence[start:cut_start].strip():
            start = cut_end
            continue
        clauses.append(_Clause(sentence[start:cut_start], offset + start))
        start = cut_end
    clauses.append(_Clause(sentence[start:], offset + start))
    return [c for c in clauses if split_words(c.text)]


def _strip_connectives(text: str) -> str:
    words = text.strip().split()
    while words and words[0].lower().strip(",") in LEADING_CONNECTIVES:
        words = words[1:]
    return " ".join(words)


def _noun_phrase(words: list[str], start: int) -> str | None:
    """The noun phrase beginning at `start` (determiner/concept/pronoun + modifiers), if any."""
    if start >= len(words):
        return None
    first = words[start]
    low = first.lower()
    if low in OBJECT_PRONOUNS or low in SUBJECT_PRONOUNS:
        return first
    if not (low in DETERMINERS or first.startswith("<") or first[:1].isupper()):
        return None
    end = start + 1
    while end < len(words):
        w = words[end].lower()
        if w in PREPOSITIONS or w in DIRECTIONS or w in {"and", "then"} or is_verb(w):
            break
        end += 1
    return " ".join(words[start:end])


def _resolve(clause: str, previous: _Referents) -> tuple[str, _Referents]:
    """Give a subjectless clause the previous subject and replace pronouns by their referents."""
    text = _strip_connectives(clause).strip(" ,;:")
    words = split_words(text)
    verb_at = next((i for i, w in enumerate(words) if is_verb(w)), None)
    if verb_at is None:
        return text, previous
    subject: str | None
    if previous.subject and (
        verb_at == 0 or (verb_at == 1 and words[0].lower() in SUBJECT_PRONOUNS)
    ):
        subject = _definite(previous.subject)
        spans = list(WORD.finditer(text))
        rest = text if verb_at == 0 else text[spans[0].end() :].lstrip()
        text = f"{subject} {rest}"
        verb_at = len(subject.split())
    else:
        own = words[:verb_at]
        while own and own[0].lower().endswith("ly") and own[0].lower() not in DETERMINERS:
            own = own[1:]
        subject = " ".join(own) or previous.subject
    spans = list(WORD.finditer(text))
    verb_end = spans[verb_at].end()
    referent = previous.other_than(subject)
    if referent:
        tail = re.sub(
            r"\b(?:it|him|them)\b", lambda _m: _definite(referent), text[verb_end:], flags=re.I
        )
        text = text[:verb_end] + tail
    obj = _noun_phrase(split_words(text), verb_at + 1)
    mentioned = [e for e in (subject, obj) if e and e.lower() not in OBJECT_PRONOUNS]
    return text, _Referents(subject=subject, entities=(*previous.entities, *mentioned)[-8:])


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip(" ,;:.!?\"'")
    if text[:1].isalpha():
        text = text[0].upper() + text[1:]
    return text


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def prose_plots(text: str, first_line: int = 1, limit: int | None = None) -> list[tuple[str, int]]:
    """Plot texts with the source line each one starts on (stops after `limit` + 1 plots)."""
    plots: list[tuple[str, int]] = []
    referents = _Referents()
    for paragraph, line_starts, base_line in _paragraphs(text, first_line):
        sentence_start = 0
        bounds = [m.end() for m in _SENTENCE_END.finditer(paragraph)] + [len(paragraph)]
        for end in bounds:
            sentence = paragraph[sentence_start:end]
            for clause in _split_clauses(sentence, sentence_start):
                resolved, referents = _resolve(clause.text, referents)
                tidy = _tidy(resolved)
                if tidy:
                    line = base_line + bisect.bisect_right(line_starts, clause.offset) - 1
                    plots.append((tidy, line))
                    if limit is not None and len(plots) > limit:
                        return plots
            sentence_start = end
    return plots


def _paragraphs(text: str, first_line: int) -> list[tuple[str, list[int], int]]:
    """Paragraphs (blank lines, headings and list items separate them), joined into one line
    each, with the offsets where each source line starts."""
    result: list[tuple[str, list[int], int]] = []
    pieces: list[str] = []
    starts: list[int] = []
    base = first_line
    length = 0

    def flush() -> None:
        nonlocal length
        if pieces:
            result.append((" ".join(pieces), list(starts), base))
        pieces.clear()
        starts.clear()
        length = 0

    for number, raw in enumerate(text.split("\n"), start=first_line):
        line = raw.strip()
        bullet = re.match(r"^(?:[-*+]|\d+[.)])\s+", line)
        if not line or line.startswith("#") or bullet:
            flush()
            if not bullet:
                continue
            line = line[bullet.end() :]
        line = line.replace("**", "").replace("`", "")
        if not pieces:
            base = number
        starts.append(length)
        pieces.append(line)
        length += len(line) + 1
    flush()
    return result


def split_prose(text: str) -> list[str]:
    """Single-event plots from prose, by rule.

    1. Sentences end at . ! or ?; blank lines, headings and list items end paragraphs.
    2. A sentence is cut at ';' and 'then' always, and at 'and' / ',' when the part before has a
       verb and the part after starts with a verb or has its own subject and verb.
    3. A clause with no subject takes the previous subject ('a boy' -> 'the boy'); a leading
       he/she/it/they is the previous subject; an object it/him/them is the previous object.

    So "A boy met a wolf and killed it." gives "A boy met a wolf", "The boy killed the wolf".
    """
    return [plot for plot, _line in prose_plots(text)]

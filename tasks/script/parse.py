"""Story scripts: parse YAML or plain prose into plots, each one shot with a query and a prompt.

A plot's *query* says what motion and layout to retrieve (subject class, verb, direction,
place); its *prompt* says what the shot should look like (appearance, concept tokens such as
`<bob>`). Missing ones are derived from the plot text. Every error names the file, the line
and the problem, and nothing but `StoryScriptError` leaves `load_story`.

YAML schema::

    title: The lighthouse ball          # optional, default: the file name
    characters:                         # optional: name -> concept pack (relative path)
      bob: concepts/bob                 #   or {pack: concepts/bob, class: ball}
    plots:                              # required, non-empty
      - A red striped ball rolls left over the grass     # a plain string, or a mapping:
      - text: <bob> bounces over the sand                # required
        query: ball bounces over sand                    # optional
        prompt: <bob> bouncing on a sunny beach          # optional
        frames: 32        # 1..max_frames
        seed: 7           # 0..2**63-1
        tau: 500          # 0..1000: structure guidance only for denoising steps t >= tau
        structure: depth  # depth | edges | motion
        clip_id: 3f2a...  # pin a library clip instead of retrieving one

Prose (.md / .txt) is split by `split_prose`; an optional YAML front matter block between
`---` lines may give `title` and `characters`; a leading `# Heading` gives the title.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_json
from story.tasks.world.captions import COLOUR_EXTRA, COLOUR_WORDS, TEXTURE_EXTRA, TEXTURE_WORDS

STRUCTURES = ("depth", "edges", "motion")
MAX_STORY_BYTES = 1 << 20
MAX_PLOTS = 1000
MAX_TEXT_CHARS = 2000
MAX_SEED = 2**63 - 1
MAX_TAU = 1000.0
DEFAULT_CLASS = "object"

_STORY_FIELDS = ("title", "characters", "plots")
_PLOT_FIELDS = ("text", "query", "prompt", "frames", "seed", "tau", "structure", "clip_id")
_CHARACTER_FIELDS = ("pack", "class")
_FRONT_MATTER_FIELDS = ("title", "characters")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_CONCEPT = re.compile(r"<([A-Za-z_][A-Za-z0-9_-]{0,63})>")
_CLIP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"<[A-Za-z_][A-Za-z0-9_-]*>|[A-Za-z0-9][A-Za-z0-9'’-]*")


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


def safe_relpath(value: Any, field: str, path: str | Path, line: int) -> str:
    """A relative path that stays inside its root: no absolute path, `~`, URL, `..` or NUL."""
    if not isinstance(value, str) or not value.strip():
        raise StoryScriptError(path, line, f"{field} must be a relative path, got {value!r}")
    text = value.strip()
    if "\0" in text or "\\" in text:
        raise StoryScriptError(path, line, f"{field} {text!r}: backslashes and NUL are refused")
    if text.startswith(("/", "~")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text):
        raise StoryScriptError(
            path, line, f"{field} {text!r} must be relative to the workspace (no absolute paths)"
        )
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise StoryScriptError(path, line, f"{field} {text!r} must not climb out with '..'")
    return PurePosixPath(*parts).as_posix()


def resolve_within(root: str | Path, relpath: str) -> Path:
    """Join a checked relative path to its root and refuse results (symlinks too) outside it."""
    base = Path(root).resolve()
    target = (base / relpath).resolve()
    if not target.is_relative_to(base):
        raise StoryError(f"{relpath!r} resolves to {target}, outside {base}")
    return target


# ---------------------------------------------------------------------------------------------
# Prose splitting: sentences -> clauses -> single-event plots, with simple pronoun resolution.


def _lexicon(words: str) -> frozenset[str]:
    return frozenset(words.split())


_DETERMINERS = _lexicon(
    "a an the this that these those his her its their my your our one two three some"
)
_SUBJECT_PRONOUNS = frozenset({"he", "she", "it", "they"})
_OBJECT_PRONOUNS = frozenset({"it", "him", "them"})
_PREPOSITIONS = _lexicon(
    "over across on onto in into through along past toward towards to from under around behind "
    "near by at with up down off out of above below beside between after before while"
)
_DIRECTIONS = _lexicon(
    "left right forward forwards backward backwards away closer back upward downward "
    "clockwise counterclockwise sideways home"
)
_LEADING_CONNECTIVES = _lexicon("and then next finally afterwards later so")
_APPEARANCE = _lexicon(
    "red orange yellow green blue purple violet pink brown black white grey gray golden silver "
    "cyan magenta teal striped stripy dotted spotted checkered checked plaid patterned painted "
    "coloured colored colorful colourful shiny glossy matte metallic wooden glass plastic rubber "
    "furry fluffy sparkly glowing bright pale dark-red light-blue dark-blue"
)
_APPEARANCE = _APPEARANCE | frozenset(
    word
    for table in (COLOUR_WORDS, COLOUR_EXTRA, TEXTURE_WORDS, TEXTURE_EXTRA)
    for words in table.values()
    for word in words
    if " " not in word
)
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


def _inflections(base: str) -> set[str]:
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


_VERBS = frozenset(form for base in _VERB_BASES for form in _inflections(base)) | _IRREGULAR


def _is_verb(word: str) -> bool:
    """A known verb form, or an unknown word ending in -ed that is not an appearance word."""
    low = word.lower()
    if low in _VERBS:
        return True
    return (
        len(low) >= 5
        and low.endswith("ed")
        and not low.endswith("eed")
        and low not in _APPEARANCE
        and low not in _DIRECTIONS
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


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _has_verb(text: str) -> bool:
    return any(_is_verb(w) for w in _words(text))


def _starts_with_verb(text: str) -> bool:
    words = _words(text)
    return bool(words) and _is_verb(words[0])


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
    return [c for c in clauses if _words(c.text)]


def _strip_connectives(text: str) -> str:
    words = text.strip().split()
    while words and words[0].lower().strip(",") in _LEADING_CONNECTIVES:
        words = words[1:]
    return " ".join(words)


def _noun_phrase(words: list[str], start: int) -> str | None:
    """The noun phrase beginning at `start` (determiner/concept/pronoun + modifiers), if any."""
    if start >= len(words):
        return None
    first = words[start]
    low = first.lower()
    if low in _OBJECT_PRONOUNS or low in _SUBJECT_PRONOUNS:
        return first
    if not (low in _DETERMINERS or first.startswith("<") or first[:1].isupper()):
        return None
    end = start + 1
    while end < len(words):
        w = words[end].lower()
        if w in _PREPOSITIONS or w in _DIRECTIONS or w in {"and", "then"} or _is_verb(w):
            break
        end += 1
    return " ".join(words[start:end])


def _resolve(clause: str, previous: _Referents) -> tuple[str, _Referents]:
    """Give a subjectless clause the previous subject and replace pronouns by their referents."""
    text = _strip_connectives(clause).strip(" ,;:")
    words = _words(text)
    verb_at = next((i for i, w in enumerate(words) if _is_verb(w)), None)
    if verb_at is None:
        return text, previous
    if previous.subject and (
        verb_at == 0 or (verb_at == 1 and words[0].lower() in _SUBJECT_PRONOUNS)
    ):
        subject = _definite(previous.subject)
        spans = list(_WORD.finditer(text))
        rest = text if verb_at == 0 else text[spans[0].end() :].lstrip()
        text = f"{subject} {rest}"
        verb_at = len(subject.split())
    else:
        own = words[:verb_at]
        while own and own[0].lower().endswith("ly") and own[0].lower() not in _DETERMINERS:
            own = own[1:]
        subject = " ".join(own) or previous.subject
    spans = list(_WORD.finditer(text))
    verb_end = spans[verb_at].end()
    referent = previous.other_than(subject)
    if referent:
        tail = re.sub(
            r"\b(?:it|him|them)\b", lambda _m: _definite(referent), text[verb_end:], flags=re.I
        )
        text = text[:verb_end] + tail
    obj = _noun_phrase(_words(text), verb_at + 1)
    mentioned = [e for e in (subject, obj) if e and e.lower() not in _OBJECT_PRONOUNS]
    return text, _Referents(subject=subject, entities=(*previous.entities, *mentioned)[-8:])


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip(" ,;:.!?\"'")
    if text[:1].isalpha():
        text = text[0].upper() + text[1:]
    return text


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def _prose_plots(text: str, first_line: int = 1, limit: int | None = None) -> list[tuple[str, int]]:
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

    def flush() -> None:
        nonlocal length
        if pieces:
            result.append((" ".join(pieces), list(starts), base))
        pieces.clear()
        starts.clear()
        length = 0

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
    return [plot for plot, _line in _prose_plots(text)]


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
    words = _words(prompt)
    kept: list[str] = []
    for i, word in enumerate(words):
        concept = _CONCEPT.fullmatch(word)
        if concept:
            cls = classes.get(concept.group(1), DEFAULT_CLASS)
            following = words[i + 1].lower() if i + 1 < len(words) else ""
            if following != cls.lower():
                kept.append(cls)
            continue
        if word.lower() in _APPEARANCE:
            continue
        kept.append(word.lower())
    for i in range(len(kept) - 1):
        if kept[i] in {"a", "an"}:
            kept[i] = "an" if kept[i + 1][:1] in "aeiou" else "a"
    return " ".join(kept) or prompt.lower(), prompt


# ---------------------------------------------------------------------------------------------
# Loading: YAML through composed nodes (so every value knows its line), or prose.


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Yaml:
    """Walks a composed YAML node tree, converting values and reporting lines."""

    def __init__(self, path: str, line_offset: int = 0) -> None:
        self.path = path
        self.line_offset = line_offset
        self._seen: set[int] = set()
        self._constructor = yaml.constructor.SafeConstructor()
        self._text = ""

    def _mark_line(self, mark: yaml.Mark) -> int:
        """The mark's line counting only newlines (YAML also breaks lines at NEL, LS and PS)."""
        return self._text.count("\n", 0, mark.index) + 1 + self.line_offset

    def line(self, node: yaml.Node) -> int:
        return self._mark_line(node.start_mark)

    def error(self, node: yaml.Node, problem: str) -> StoryScriptError:
        return StoryScriptError(self.path, self.line(node), problem)

    def compose(self, text: str) -> yaml.Node | None:
        self._text = text
        try:
            return yaml.compose(text, Loader=_LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = self._mark_line(mark) if mark else self.line_offset + 1
            problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            raise StoryScriptError(self.path, line, f"broken YAML: {problem}") from exc
        except (yaml.YAMLError, RecursionError, ValueError) as exc:
            raise StoryScriptError(self.path, self.line_offset + 1, f"broken YAML: {exc}") from exc

    def visit(self, node: yaml.Node) -> None:
        if id(node) in self._seen:
            raise self.error(node, "YAML anchors/aliases are not supported in stories")
        self._seen.add(id(node))

    def mapping(
        self, node: yaml.Node, what: str, allowed: tuple[str, ...]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping with keys {', '.join(allowed)}")
        self.visit(node)
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, f"{what}: keys must be plain names")
            key = key_node.value
            if key == "<<" or key_node.tag == "tag:yaml.org,2002:merge":
                raise self.error(key_node, "YAML merge keys are not supported in stories")
            if key not in allowed:
                raise self.error(
                    key_node, f"unknown field {key!r} in {what} (allowed: {', '.join(allowed)})"
                )
            if key in result:
                raise self.error(key_node, f"field {key!r} appears twice in {what}")
            result[key] = (key_node, value_node)
        return result

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list")
        self.visit(node)
        return list(node.value)

    def text(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.error(node, f"{what} must be text")
        value = node.value.strip()
        if not value:
            raise self.error(node, f"{what} is empty")
        if len(value) > MAX_TEXT_CHARS:
            raise self.error(node, f"{what} is longer than {MAX_TEXT_CHARS} characters")
        return value

    def number(self, node: yaml.Node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, f"{what} must be a number")
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError) as exc:
            raise self.error(node, f"{what}: unreadable value {node.value!r}") from exc
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value) if any(c in value for c in ".eE") else int(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(node, f"{what} must be a number, got {node.value!r}")
        return value


def _characters(y: _Yaml, node: yaml.Node) -> tuple[dict[str, str], dict[str, str]]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return {}, {}
    if not isinstance(node, yaml.MappingNode):
        raise y.error(node, "characters must be a mapping: name -> concept pack")
    y.visit(node)
    packs: dict[str, str] = {}
    classes: dict[str, str] = {}
    for key_node, value_node in node.value:
        shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "(not text)"
        if not isinstance(key_node, yaml.ScalarNode) or not _NAME.fullmatch(key_node.value):
            raise y.error(
                key_node, f"character name {shown!r} must be a plain name (letters, digits, _ -)"
            )
        name = key_node.value
        if name in packs:
            raise y.error(key_node, f"character {name!r} appears twice")
        if isinstance(value_node, yaml.MappingNode):
            fields = y.mapping(value_node, f"character {name!r}", _CHARACTER_FIELDS)
            if "pack" not in fields:
                raise y.error(value_node, f"character {name!r} needs a 'pack'")
            pack_node = fields["pack"][1]
            if "class" in fields:
                cls = y.text(fields["class"][1], f"class of character {name!r}")
                if not _NAME.fullmatch(cls):
                    raise y.error(fields["class"][1], f"class {cls!r} must be one plain word")
                classes[name] = cls
        else:
            pack_node = value_node
        pack = y.text(pack_node, f"concept pack of character {name!r}")
        packs[name] = safe_relpath(pack, f"concept pack of {name!r}", y.path, y.line(pack_node))
    return packs, classes


def _check_concepts(
    text: str, field_name: str, characters: Mapping[str, str], path: str, line: int
) -> tuple[str, ...]:
    names: list[str] = []
    for name in _CONCEPT.findall(text):
        if name not in characters:
            known = ", ".join(sorted(characters)) or "none declared"
            raise StoryScriptError(
                path, line, f"unknown character <{name}> in {field_name} (characters: {known})"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def _make_plot(
    index: int,
    text: str,
    line: int,
    path: str,
    characters: Mapping[str, str],
    classes: Mapping[str, str],
    *,
    query: str | None = None,
    prompt: str | None = None,
    field_lines: Mapping[str, int] | None = None,
    **options: Any,
) -> Plot:
    lines = dict(field_lines or {})
    _check_concepts(text, "text", characters, path, lines.get("text", line))
    derived_query, derived_prompt = derive_query_prompt(
        text, {name: classes.get(name, DEFAULT_CLASS) for name in characters}
    )
    query = query or derived_query
    prompt = prompt or derived_prompt
    _check_concepts(query, "query", characters, path, lines.get("query", line))
    used = _check_concepts(prompt, "prompt", characters, path, lines.get("prompt", line))
    return Plot(
        index=index, text=text, query=query, prompt=prompt, characters=used, line=line, **options
    )


def _plot_options(
    y: _Yaml, fields: dict[str, tuple[yaml.Node, yaml.Node]], max_frames: int
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if "frames" in fields:
        node = fields["frames"][1]
        frames = y.number(node, "frames")
        if not isinstance(frames, int) or not 1 <= frames <= max_frames:
            raise y.error(node, f"frames must be a whole number in 1..{max_frames}, got {frames}")
        options["frames"] = frames
    if "seed" in fields:
        node = fields["seed"][1]
        seed = y.number(node, "seed")
        if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise y.error(node, f"seed must be a whole number in 0..2**63-1, got {seed}")
        options["seed"] = seed
    if "tau" in fields:
        node = fields["tau"][1]
        tau = y.number(node, "tau")
        if not math.isfinite(tau) or not 0 <= tau <= MAX_TAU:
            raise y.error(node, f"tau must be a number in 0..{MAX_TAU:g}, got {tau}")
        options["tau"] = float(tau)
    if "structure" in fields:
        node = fields["structure"][1]
        structure = y.text(node, "structure")
        if structure not in STRUCTURES:
            raise y.error(
                node, f"structure must be one of {', '.join(STRUCTURES)}, got {structure!r}"
            )
        options["structure"] = structure
    if "clip_id" in fields:
        node = fields["clip_id"][1]
        clip_id = y.text(node, "clip_id")
        if not _CLIP_ID.fullmatch(clip_id) or ".." in clip_id:
            raise y.error(node, f"clip_id {clip_id!r} is not a clip id (letters, digits, _.:-)")
        options["clip_id"] = clip_id
    return options


def _story_from_yaml(text: str, path: str, max_frames: int) -> Story:
    y = _Yaml(path)
    root = y.compose(text)
    if root is None:
        raise StoryScriptError(path, 1, "empty story: no title, characters or plots")
    fields = y.mapping(root, "the story", _STORY_FIELDS)
    title = y.text(fields["title"][1], "title") if "title" in fields else Path(path).stem
    characters, classes = (
        _characters(y, fields["characters"][1]) if "characters" in fields else ({}, {})
    )
    if "plots" not in fields:
        raise y.error(root, "the story has no 'plots' list")
    plot_nodes = y.sequence(fields["plots"][1], "plots")
    if not plot_nodes:
        raise y.error(fields["plots"][1], "empty story: 'plots' has no entries")
    if len(plot_nodes) > MAX_PLOTS:
        raise y.error(fields["plots"][1], f"more than {MAX_PLOTS} plots")
    plots = []
    for index, node in enumerate(plot_nodes):
        what = f"plot {index + 1}"
        if isinstance(node, yaml.ScalarNode):
            plot_text = y.text(node, what)
            plots.append(_make_plot(index, plot_text, y.line(node), path, characters, classes))
            continue
        plot_fields = y.mapping(node, what, _PLOT_FIELDS)
        if "text" not in plot_fields:
            raise y.error(node, f"{what} has no 'text'")
        lines = {key: y.line(value) for key, (_k, value) in plot_fields.items()}
        strings = {
            key: y.text(plot_fields[key][1], f"{key} of {what}")
            for key in ("text", "query", "prompt")
            if key in plot_fields
        }
        plot_text = strings.pop("text")
        plots.append(
            _make_plot(
                index,
                plot_text,
                y.line(node),
                path,
                characters,
                classes,
                field_lines=lines,
                **strings,
                **_plot_options(y, plot_fields, max_frames),
            )
        )
    return Story(title, characters, tuple(plots), path, "yaml", classes)


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.DOTALL)


def _story_from_prose(text: str, path: str) -> Story:
    title = Path(path).stem
    characters: dict[str, str] = {}
    classes: dict[str, str] = {}
    body_line = 1
    front = _FRONT_MATTER.match(text)
    if front:
        y = _Yaml(path, line_offset=1)
        node = y.compose(front.group(1) or "")
        if node is not None:
            fields = y.mapping(node, "the front matter", _FRONT_MATTER_FIELDS)
            if "title" in fields:
                title = y.text(fields["title"][1], "title")
            if "characters" in fields:
                characters, classes = _characters(y, fields["characters"][1])
        body_line = text[: front.end()].count("\n") + 1
        text = text[front.end() :]
    heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    if heading and not (front and title != Path(path).stem):
        title = heading.group(1).strip()
    spans = _prose_plots(text, body_line, limit=MAX_PLOTS)
    if not spans:
        raise StoryScriptError(path, body_line, "empty story: no sentences to turn into plots")
    if len(spans) > MAX_PLOTS:
        raise StoryScriptError(path, spans[MAX_PLOTS][1], f"more than {MAX_PLOTS} plots")
    plots = []
    for index, (plot_text, line) in enumerate(spans):
        if len(plot_text) > MAX_TEXT_CHARS:
            raise StoryScriptError(path, line, f"plot longer than {MAX_TEXT_CHARS} characters")
        plots.append(_make_plot(index, plot_text, line, path, characters, classes))
    return Story(title, characters, tuple(plots), path, "prose", classes)


_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".md": "prose", ".txt": "prose"}


def read_story_text(path: str | Path) -> str:
    """The file as UTF-8 text; a missing, huge or non-UTF-8 file raises StoryScriptError."""
    name = str(path)
    if Path(path).exists() and not Path(path).is_file():
        raise StoryScriptError(name, 0, "not a regular file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_STORY_BYTES + 1)
    except OSError as exc:
        raise StoryScriptError(name, 0, f"cannot read the story: {exc.strerror or exc}") from exc
    if len(data) > MAX_STORY_BYTES:
        raise StoryScriptError(name, 0, f"story is larger than {MAX_STORY_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StoryScriptError(
            name, line, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start}"
        ) from exc
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise StoryScriptError(name, line, "NUL character in the story (binary file?)")
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def load_story(path: str | Path, *, max_frames: int = 256) -> Story:
    """Parse a story file: YAML (.yaml/.yml) or prose (.md/.txt)."""
    name = str(path)
    fmt = _FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise StoryScriptError(
            name, 0, f"unknown story format {Path(name).suffix!r} (use {', '.join(_FORMATS)})"
        )
    text = read_story_text(path)
    if fmt == "yaml":
        return _story_from_yaml(text, name, max_frames)
    return _story_from_prose(text, name)


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


def plots_command_impl(path: str | Path, *, max_frames: int = 256) -> dict[str, Any]:
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

"""What a free-worded query asks for: the main object's shape and motion, the camera, the ground.

"a ball rolling toward the lens on a lawn, the camera sweeps right" -> shape sphere, motion
towards, camera pan_right, ground grass. The query is cut into clauses; a clause that talks about
the camera, the view or the shot (or a pan / zoom verb) says what the camera does, the others
what the object does, so "slides left while the camera pans right" keeps both directions apart.
Each slot is read from an ordered list of patterns (longest, most specific first) that extends
the caption grammar's words with everyday wording: "getting closer", "shrinking into the
distance", "from right to left", "push in", "locked-off shot". Unstated slots stay None: the
ranking then leaves them free.

`canonical_text` rewrites the intent in the grammar's own words, which is what the video-text
encoder was trained on, so wording it never saw still reaches its text tower.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from story.tasks.world import captions as grammar

MOTIONS = (
    "static",
    "sideways_left",
    "sideways_right",
    "towards",
    "away",
    "bouncing",
    "circling",
)
CAMERAS = ("static", "pan_left", "pan_right", "zoom_in", "zoom_out")


def coarse_motion(motion: str | None) -> str | None:
    """The grammar's motion name: sideways_left / sideways_right -> sideways."""
    return "sideways" if motion and motion.startswith("sideways") else motion


def motion_matches(asked: str | None, shown: str | None) -> bool:
    """Whether a clip's motion satisfies the asked one ("sideways" accepts either direction)."""
    if asked is None:
        return True
    if asked == "sideways":
        return coarse_motion(shown) == "sideways"
    return asked == shown


@dataclass(frozen=True)
class QueryIntent:
    """The slots a query fills; None = not asked."""

    shape: str | None = None
    motion: str | None = None
    camera: str | None = None
    background: str | None = None
    colour: str | None = None
    texture: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_LEFT = r"(?:left(?:wards?)?|to the left)"
_RIGHT = r"(?:right(?:wards?)?|to the right)"
_MOVE = (
    r"(?:mov\w*|slid\w*|slip\w*|glid\w*|drift\w*|roll\w*|travel\w*|head\w*|go\w*|went|"
    r"creep\w*|shift\w*|scoot\w*|sail\w*|run\w*|rac\w*|cross\w*|walk\w*|pass\w*|fl\w*|"
    r"zip\w*|skat\w*|float\w*|swing\w*|turn\w*|pan\w*|sweep\w*|track\w*|whip\w*|veer\w*)"
)

# Object motion, most specific first. Each pattern is searched in an object clause.
_OBJECT_MOTION: list[tuple[str, re.Pattern[str]]] = [
    ("sideways_left", _rx(r"from (?:the )?right (?:side )?to (?:the )?left", r"right to left")),
    ("sideways_right", _rx(r"from (?:the )?left (?:side )?to (?:the )?right", r"left to right")),
    (
        "circling",
        _rx(
            r"\bcirc\w*",
            r"\bloop\w*",
            r"\borbit\w*",
            r"\bround and round\b",
            r"\b(?:go\w*|went|mov\w*|travel\w*|spin\w*|whirl\w*|run\w*|turn\w*) (?:a)?round\b",
            r"\blaps?\b",
            r"\bring\b",
            r"\bwhirl\w*",
            r"\brevolv\w*",
        ),
    ),
    (
        "bouncing",
        _rx(
            r"\bbounc\w*",
            r"\bhop\w*",
            r"\bjump\w*",
            r"\bleap\w*",
            r"\bbound(?:s|ing|ed)\b",
            r"\bbob\w*",
            r"\bup and down\b",
            r"\bspring\w*",
        ),
    ),
    (
        "away",
        _rx(
            r"\baway\b",
            r"\brecede\w*|\breceding\b",
            r"\bretreat\w*",
            r"\binto the (?:\w+ )?(?:distance|background)\b",
            r"\bfurther\b|\bfarther\b",
            r"\bshrink\w*|\bsmaller\b",
            r"\bdeeper\b",
            r"\bbacking off\b",
        ),
    ),
    (
        "towards",
        _rx(
            r"\btowards?\b",
            r"\bapproach\w*",
            r"\bcom\w* (?:at|closer|nearer|near|forward|up to)\b",
            r"\bclos\w* in\b",
            r"\bcloser\b|\bnearer\b",
            r"\bbigger\b|\blarger\b|\bgrow\w*",
            r"\badvanc\w*",
            r"\bcharg\w*",
            r"\brush\w* (?:at|to)\b",
        ),
    ),
    ("sideways_left", _rx(rf"\b{_MOVE}\b[\w\s]{{0,20}}?\b{_LEFT}", rf"\b{_LEFT}\b")),
    ("sideways_right", _rx(rf"\b{_MOVE}\b[\w\s]{{0,20}}?\b{_RIGHT}", rf"\b{_RIGHT}\b")),
    (
        "sideways",
        _rx(r"\bsideways\b", r"\bacross\b", r"\bslid\w*", r"\bglid\w*", r"\bsideway\b"),
    ),
    (
        "static",
        _rx(
            r"\bstill\b",
            r"\bstatic\b",
            r"\bstationary\b",
            r"\bmotionless\b",
            r"\bidle\b",
            r"\bnot mov\w*",
            r"\bdoes(?:n't| not) move\b",
            r"\bnever moves?\b",
            r"\bstays? (?:put|where|in place)\b",
            r"\bsit\w*",
            r"\brest\w*",
            r"\bstand\w*",
            r"\bparked\b",
            r"\bin place\b",
            r"\bunmoving\b",
            r"\bfrozen\b",
        ),
    ),
]

# Camera moves, most specific first; searched in camera clauses.
_CAMERA: list[tuple[str, re.Pattern[str]]] = [
    (
        "zoom_in",
        _rx(
            r"\bzoom\w* (?:in|closer)\b",
            r"\bpush\w* in\b",
            r"\bdolly in\b",
            r"\bmov\w* in\b",
            r"\bcreep\w* in\b",
            r"\btighten\w*",
            r"\bzooms? closer\b",
            r"\bcloser\b",
        ),
    ),
    (
        "zoom_out",
        _rx(
            r"\bzoom\w* (?:out|back)\b",
            r"\bpull\w* (?:back|out|away)\b",
            r"\bdolly (?:out|back)\b",
            r"\bwiden\w*",
            r"\bwider\b|\bwide\b",
            r"\bback out\b",
        ),
    ),
    ("pan_left", _rx(rf"\b{_MOVE}\b[\w\s]{{0,12}}?\b{_LEFT}", rf"\b{_LEFT}\b")),
    ("pan_right", _rx(rf"\b{_MOVE}\b[\w\s]{{0,12}}?\b{_RIGHT}", rf"\b{_RIGHT}\b")),
    ("zoom_in", _rx(r"\bzoom\w*")),
    (
        "static",
        _rx(
            r"\bstill\b",
            r"\bstatic\b",
            r"\bfixed\b",
            r"\blocked\b",
            r"\blocked-off\b",
            r"\btripod\b",
            r"\bsteady\b",
            r"\bstationary\b",
            r"\bhold\w*",
            r"\bstays?\b",
            r"\bdoes(?:n't| not) move\b",
            r"\bno (?:camera )?mov\w*",
            r"\bnot mov\w*",
        ),
    ),
]

_SHAPES: list[tuple[str, re.Pattern[str]]] = [
    ("cone", _rx(r"\bcon(?:e|es|ical)\b", r"\bspires?\b", r"\bpyramid\w*", r"\bpointy\b")),
    (
        "cylinder",
        _rx(
            r"\bcylind\w*",
            r"\bdrums?\b",
            r"\bpillars?\b",
            r"\bcans?\b",
            r"\btubes?\b",
            r"\bbarrels?\b",
            r"\bcolumns?\b",
            r"\bposts?\b",
            r"\bcanisters?\b",
            r"\bpipes?\b",
            r"\bpucks?\b",
        ),
    ),
    (
        "cube",
        _rx(
            r"\bcub(?:e|es|ic|oid)\b",
            r"\bbox(?:es)?\b",
            r"\bblocks?\b",
            r"\bcrates?\b",
            r"\bdice\b",
            r"\bdie\b",
            r"\bbrick\w*",
            r"\bsquare\b",
        ),
    ),
    (
        "sphere",
        _rx(
            r"\bspher\w*",
            r"\bballs?\b",
            r"\borbs?\b",
            r"\bglobes?\b",
            r"\bmarbles?\b",
            r"\bbeach ?ball\b",
            r"\bround thing\b",
        ),
    ),
]

_GROUNDS: list[tuple[str, re.Pattern[str]]] = [
    ("grass", _rx(r"\bgrass\w*", r"\blawns?\b", r"\bmeadows?\b", r"\bfield\b", r"\bpark\b")),
    ("sand", _rx(r"\bsand\w*", r"\bdeserts?\b", r"\bbeach\w*", r"\bdunes?\b")),
    ("snow", _rx(r"\bsnow\w*", r"\bice\b", r"\bicy\b", r"\bwinter\w*", r"\bfrost\w*")),
    (
        "dusk",
        _rx(r"\bdusk\b", r"\bsunset\b", r"\bsundown\b", r"\bevening\b", r"\btwilight\b"),
    ),
]
_CAMERA_NOUN = r"(?:camera|cam|view|shot|frame|framing|lens)"
_FILLER = r"(?:slowly|quickly|gently|also|then|just|starts to|begins to|keeps|is|smoothly)"
_TAIL = (
    r"(?:to|the|left|right|in|out|back|closer|wide|wider|away|still|fixed|steady|put|not|"
    r"move|moves|moving|nowhere|just|holds|with|it|too|over|around|on|them|us)"
)
_BEFORE = r"(?:static|fixed|still|locked|off|steady|tripod|no|handheld|slow|wide)"
_CAMERA_SPANS = re.compile(
    "|".join(
        (
            rf"(?:\b{_BEFORE} )*\b{_CAMERA_NOUN}\b(?: {_FILLER})*"
            rf"(?: (?:does not|doesn't|do not|won't|never) \w+| \w+)?(?: {_TAIL}\b)*",
            rf"\bwe (?:\w+ )?(?:push|pull|zoom|pan|dolly|move|creep|swing|turn)\w*(?: {_TAIL}\b)*",
            r"(?:\b(?:slow|quick|fast|gentle) )?\b(?:pan(?:s|ning|ned)?|zoom(?:s|ing|ed)?|"
            r"push(?:es|ing)? in|pull(?:s|ing|ed)? (?:back|out)|dolly (?:in|out|back)|"
            r"tripod|locked off)\b(?: (?:to the |to )?(?:left|right|in|out|back|closer))?",
        )
    )
)
_CLAUSE_SPLIT = re.compile(r"[,;.:!?]|\b(?:while|as|and then|whereas|meanwhile|but)\b")


def _first(table: list[tuple[str, re.Pattern[str]]], text: str) -> str | None:
    """The label of the earliest-listed pattern that matches `text`."""
    for label, pattern in table:
        if pattern.search(text):
            return label
    return None


def _earliest(table: list[tuple[str, re.Pattern[str]]], text: str) -> str | None:
    """The slot value mentioned first in `text` (e.g. the main object's shape)."""
    best: tuple[int, str] | None = None
    for label, pattern in table:
        found = pattern.search(text)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), label)
    return best[1] if best else None


def split_camera(text: str) -> tuple[str, str]:
    """(what the object does, what the camera does): camera phrases cut out of the text."""
    spans = [m.span() for m in _CAMERA_SPANS.finditer(text)]
    camera = " ; ".join(text[a:b] for a, b in spans)
    rest, last = [], 0
    for a, b in spans:
        rest.append(text[last:a])
        last = b
    rest.append(text[last:])
    return " , ".join(rest), camera


def parse_query(text: str) -> QueryIntent:
    """The intent of a free-worded query (see the module docstring)."""
    lowered = re.sub(r"\s+", " ", text.lower().replace("-", " ").replace("\u2019", "'"))
    object_text, camera_text = split_camera(lowered)
    motion = None
    for clause in _CLAUSE_SPLIT.split(object_text):
        motion = _first(_OBJECT_MOTION, clause) if clause.strip() else None
        if motion:
            break
    grammar_words = grammar.attributes_from_caption(text)
    return QueryIntent(
        shape=_earliest(_SHAPES, lowered),
        motion=motion,
        camera=_first(_CAMERA, camera_text) if camera_text else None,
        background=_earliest(_GROUNDS, lowered),
        colour=grammar_words.get("colour"),
        texture=grammar_words.get("texture"),
    )


def canonical_text(intent: QueryIntent) -> str:
    """The intent in the caption grammar's own words (for the video-text encoder)."""
    noun = " ".join(
        w
        for w in (
            grammar.COLOUR_WORDS[intent.colour][0] if intent.colour else None,
            grammar.TEXTURE_WORDS[intent.texture][0] if intent.texture else None,
            grammar.SHAPE_WORDS[intent.shape][0] if intent.shape else "object",
        )
        if w
    )
    parts = [("an " if noun[0] in "aeiou" else "a ") + noun]
    if intent.motion:
        base = coarse_motion(intent.motion)
        phrase = grammar.MOTION_WORDS[base][0]
        if intent.motion == "sideways_left":
            phrase = "slides to the left"
        elif intent.motion == "sideways_right":
            phrase = "slides to the right"
        parts.append(phrase)
    if intent.background:
        parts.append(grammar.BACKGROUND_WORDS[intent.background][0])
    text = " ".join(parts)
    if intent.camera:
        text += f", while {grammar.CAMERA_WORDS[intent.camera][0]}"
    return text

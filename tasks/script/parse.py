"""Story scripts: parse YAML or plain prose into plots, each one shot with a query and a prompt.

A plot's *query* says what motion and layout to retrieve (subject class, verb, direction,
place); its *prompt* says what the shot should look like (appearance, concept tokens such as
`<bob>`). Missing ones are derived from the plot text, with the setting carried (`setting.py`):
a derived prompt that names no place keeps the story's last place, and a character mentioned
again keeps its look. Every error names the file, the line and the problem, and nothing but
`StoryScriptError` leaves `load_story`.

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

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from story.tasks.script.paths import safe_relpath
from story.tasks.script.prose import prose_plots
from story.tasks.script.query_prompt import derive_query_prompt
from story.tasks.script.setting import Setting
from story.tasks.script.story import (
    CONCEPT,
    DEFAULT_CLASS,
    MAX_PLOTS,
    MAX_SEED,
    MAX_TAU,
    MAX_TEXT_CHARS,
    STRUCTURES,
    Plot,
    Story,
    StoryScriptError,
)
from story.tasks.script.yaml_nodes import YamlNodes

MAX_STORY_BYTES = 1 << 20

_STORY_FIELDS = ("title", "characters", "plots")
_PLOT_FIELDS = ("text", "query", "prompt", "frames", "seed", "tau", "structure", "clip_id")
_CHARACTER_FIELDS = ("pack", "class")
_FRONT_MATTER_FIELDS = ("title", "characters")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_CLIP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def _characters(y: YamlNodes, node: yaml.Node) -> tuple[dict[str, str], dict[str, str]]:
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
    for name in CONCEPT.findall(text):
        # Without a `characters:` block, names resolve at render time among the workspace's and
        # the bundled packs; with one, the block is the cast list and a typo is caught here.
        if characters and name not in characters:
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
    setting: Setting | None = None,
    **options: Any,
) -> Plot:
    lines = dict(field_lines or {})
    _check_concepts(text, "text", characters, path, lines.get("text", line))
    derived_query, derived_prompt = derive_query_prompt(
        text, {name: classes.get(name, DEFAULT_CLASS) for name in characters}
    )
    query = query or derived_query
    if setting is not None:
        prompt = setting.prompt(derived_prompt, prompt)
    prompt = prompt or derived_prompt
    _check_concepts(query, "query", characters, path, lines.get("query", line))
    used = _check_concepts(prompt, "prompt", characters, path, lines.get("prompt", line))
    return Plot(
        index=index, text=text, query=query, prompt=prompt, characters=used, line=line, **options
    )


def _plot_options(
    y: YamlNodes, fields: dict[str, tuple[yaml.Node, yaml.Node]], max_frames: int
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
    y = YamlNodes(path)
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
    setting = Setting()
    for index, node in enumerate(plot_nodes):
        what = f"plot {index + 1}"
        if isinstance(node, yaml.ScalarNode):
            plot_text = y.text(node, what)
            plots.append(
                _make_plot(
                    index, plot_text, y.line(node), path, characters, classes, setting=setting
                )
            )
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
                setting=setting,
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
        y = YamlNodes(path, line_offset=1)
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
    spans = prose_plots(text, body_line, limit=MAX_PLOTS)
    if not spans:
        raise StoryScriptError(path, body_line, "empty story: no sentences to turn into plots")
    if len(spans) > MAX_PLOTS:
        raise StoryScriptError(path, spans[MAX_PLOTS][1], f"more than {MAX_PLOTS} plots")
    plots = []
    setting = Setting()
    for index, (plot_text, line) in enumerate(spans):
        if len(plot_text) > MAX_TEXT_CHARS:
            raise StoryScriptError(path, line, f"plot longer than {MAX_TEXT_CHARS} characters")
        plots.append(_make_plot(index, plot_text, line, path, characters, classes, setting=setting))
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

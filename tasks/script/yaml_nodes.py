"""A YAML reader that keeps every value's line, so a bad story names the line at fault.

The text is composed into nodes (not loaded), each value is converted on request with a check
of its kind, and anchors, aliases and merge keys are refused: a story is plain data.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from story.tasks.script.story import MAX_TEXT_CHARS, StoryScriptError

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlNodes:
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
            return yaml.compose(text, Loader=LOADER)
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
        if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
            value = float(value) if any(c in value for c in ".eE") else int(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(node, f"{what} must be a number, got {node.value!r}")
        return value

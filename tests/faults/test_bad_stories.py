"""Bad stories as a user meets them: through `story plots`, in every path field, and under fuzzing.

The parser's own unit tests (tests/tasks/test_script.py) pin each bad file's line and message;
here the same files go through the CLI (one `error: FILE:LINE: problem` line, exit code 2, no
traceback), every field that names a path is tried with escapes, and good stories are mutated
the way hand edits break them: nothing but `StoryScriptError` may leave `load_story`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from story.flows.cli import app
from story.tasks.script.parse import load_story
from story.tasks.script.story import StoryScriptError
from tests.faults.conftest import REPO, STORIES, Recorder

BAD = sorted(p.name for p in STORIES.iterdir() if not p.name.startswith("good_"))
GOOD = [STORIES / "good_basic.yaml", STORIES / "good_prose.md", STORIES / "good_prose.txt"]
GOOD += sorted((REPO / "datasets" / "stories").glob("*.*"))

ESCAPES = [
    "../../etc/passwd",
    "concepts/../../../etc/passwd",
    "/etc/passwd",
    "~/.ssh/id_rsa",
    "file:///etc/passwd",
    "s3://bucket/concepts/bob",
    "C:\\Windows\\system32",
    "concepts/\\..\\..\\x",
]


def _story_line(path: Path, line: int) -> bool:
    """True when `line` is a real line of the file (1-based)."""
    return 1 <= line <= max(1, path.read_bytes().count(b"\n") + 1)


@pytest.mark.parametrize("name", BAD)
def test_story_plots_reports_a_bad_story_as_one_error_naming_file_and_line(
    name: str, fault: Recorder
) -> None:
    path = STORIES / name
    with pytest.raises(StoryScriptError) as caught:
        load_story(path)
    result = CliRunner().invoke(app, ["plots", str(path)])
    lines = result.stderr.strip().splitlines()
    expected = f"error: {caught.value}"
    one_line = lines == [expected] and _story_line(path, caught.value.line)
    fault(
        f"story: {name}",
        "exit 2, one error line naming file:line",
        f"exit {result.exit_code}, "
        + ("one error line naming file:line" if one_line else repr(result.stderr[:200])),
    )
    assert result.exit_code == 2
    assert lines == [expected]
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")
    assert _story_line(path, caught.value.line), caught.value
    assert "Traceback" not in result.output


def test_json_mode_prints_the_error_as_one_json_document(tmp_path: Path) -> None:
    path = STORIES / "traversal.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "story.flows.cli", "plots", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    document = json.loads(proc.stdout)
    assert document["error"].startswith(f"{path}:3: ")
    assert "Traceback" not in proc.stderr


def _field_forms(escape: str) -> dict[str, tuple[str, str, int]]:
    """Each place a story names a path: (file suffix, text, line of the path)."""
    quoted = json.dumps(escape)
    return {
        "yaml characters: name -> pack": (
            ".yaml",
            f"title: t\ncharacters:\n  bob: {quoted}\nplots:\n  - <bob> rolls left\n",
            3,
        ),
        "yaml characters: name -> {pack}": (
            ".yaml",
            f"title: t\ncharacters:\n  bob:\n    class: ball\n    pack: {quoted}\n"
            "plots:\n  - <bob> rolls left\n",
            5,
        ),
        "prose front matter characters": (
            ".md",
            f"---\ntitle: t\ncharacters:\n  bob: {quoted}\n---\n<bob> rolls left.\n",
            4,
        ),
        "plot clip_id": (
            ".yaml",
            f"plots:\n  - text: a ball rolls left\n    clip_id: {quoted}\n",
            3,
        ),
    }


@pytest.mark.parametrize("escape", ESCAPES)
def test_every_path_field_refuses_escapes_and_names_the_line(
    escape: str, tmp_path: Path, fault: Recorder
) -> None:
    outcomes = {}
    for form, (suffix, text, line) in _field_forms(escape).items():
        path = tmp_path / f"story{suffix}"
        path.write_text(text)
        try:
            load_story(path)
            outcomes[form] = "accepted"
        except StoryScriptError as exc:
            outcomes[form] = "refused" if (exc.path, exc.line) == (str(path), line) else str(exc)
    accepted = [form for form, outcome in outcomes.items() if outcome != "refused"]
    fault(
        f"story path traversal: {escape!r} in every path field",
        "refused at its line in all 4 fields",
        "refused at its line in all 4 fields" if not accepted else f"not refused: {outcomes}",
    )
    assert not accepted, outcomes


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frames", "1e308"),
        ("frames", "-5"),
        ("frames", "16.5"),
        ("frames", "true"),
        ("frames", "999999999999999999999999999999"),
        ("seed", "18446744073709551616"),
        ("seed", "1.5"),
        ("seed", ".nan"),
        ("seed", "[1, 2]"),
        ("tau", ".inf"),
        ("tau", "-0.5"),
        ("tau", ".nan"),
    ],
)
def test_absurd_numbers_are_refused_at_their_line(field: str, value: str, tmp_path: Path) -> None:
    path = tmp_path / "story.yaml"
    path.write_text(f"plots:\n  - a cube slides\n  - text: a ball rolls\n    {field}: {value}\n")
    with pytest.raises(StoryScriptError) as caught:
        load_story(path)
    assert caught.value.line == 4
    assert field in caught.value.problem


@pytest.mark.parametrize("breaker", ["\x85", "\u2028", "\u2029"])
def test_unicode_line_breaks_do_not_shift_the_reported_line(breaker: str, tmp_path: Path) -> None:
    # YAML also ends lines at NEL, LS and PS; editors and `grep -n` count newlines only.
    path = tmp_path / "story.yaml"
    body = "plots:\n  - a ball rolls\n  - text: a cube\n    oops: 1\n"
    path.write_text(f'title: "a{breaker}b"\n' + body)
    with pytest.raises(StoryScriptError) as caught:
        load_story(path)
    assert caught.value.line == 5, caught.value


_YAMLISH = [
    "&a",
    "*a",
    "*missing",
    "<<: *a",
    "!!python/object/apply:os.system ['id']",
    "!!binary AAAA",
    "!custom",
    "{",
    "}",
    "[",
    "]",
    "|",
    ">-",
    "---",
    "...",
    "%YAML 1.1",
    "? ",
    ": ",
    "- ",
    "\t",
    "  ",
    "#",
    "'",
    '"',
    "\\",
    "1e999",
    "-1",
    "0x7f",
    "0o17",
    ".nan",
    "~",
    "null",
    "<bob>",
    "<alice>",
    "<>",
    "frames: 1",
    "seed: -3",
    "tau: 2000",
    "text:",
    "plots:",
    "characters:",
    "\u00e9\u4e2d\U0001f600",
    "\ufeff",
    "\x85",
    "\u2028",
    "\r",
    "\x00",
]


@st.composite
def mutated_story(draw: st.DrawFn) -> tuple[str, bytes]:
    """A good story (YAML or prose) broken the ways hand edits break files."""
    source = draw(st.sampled_from(GOOD))
    lines = source.read_text(encoding="utf-8").split("\n")
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(lines)))
        kind = draw(st.sampled_from(["insert", "delete", "duplicate", "splice", "indent"]))
        token = draw(st.sampled_from(_YAMLISH) | st.text(max_size=8))
        if kind == "insert":
            lines.insert(at, token)
        elif kind == "delete" and lines:
            lines.pop(min(at, len(lines) - 1))
        elif kind == "duplicate" and lines:
            lines.insert(at, lines[min(at, len(lines) - 1)])
        elif kind == "indent" and lines:
            index = min(at, len(lines) - 1)
            lines[index] = " " * draw(st.integers(1, 5)) + lines[index]
        elif lines:
            index = min(at, len(lines) - 1)
            column = draw(st.integers(0, len(lines[index])))
            lines[index] = lines[index][:column] + token + lines[index][column:]
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=4)) + data[cut:]
    return source.suffix, data


def _only_story_errors(suffix: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"story{suffix}"
        path.write_bytes(data)
        try:
            story = load_story(path)
        except StoryScriptError as exc:
            assert str(exc).startswith(f"{path}:{exc.line}: ")
            assert 0 <= exc.line <= data.count(b"\n") + 2
            return
        assert story.plots


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_story())
def test_fuzz_mutated_stories_raise_only_story_errors_naming_a_real_line(case) -> None:
    _only_story_errors(*case)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutated_story()
    | st.tuples(st.sampled_from([".yaml", ".md", ".txt"]), st.binary(max_size=600))
    | st.tuples(
        st.sampled_from([".yaml", ".md", ".txt"]),
        st.lists(st.sampled_from(_YAMLISH) | st.text(max_size=12), max_size=40).map(
            lambda parts: "\n".join(parts).encode("utf-8", "surrogatepass")
        ),
    )
)
def test_fuzz_heavy_stories_bytes_and_yaml_soup_raise_only_story_errors(case) -> None:
    _only_story_errors(*case)

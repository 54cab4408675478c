"""The project's error types: each message names the file or place and what is wrong with it."""

from __future__ import annotations


class StoryError(Exception):
    """Base of the project's errors; `str()` names the file or place and the problem."""


class ManifestError(StoryError):
    """A clip manifest (or one of its rows) cannot be used."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        place = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{place}: {problem}")

    def __reduce__(self) -> tuple[type[ManifestError], tuple[str, int | None, str]]:
        return (type(self), (self.path, self.line, self.problem))


class MediaError(StoryError):
    """A media file cannot be read; `reason` is a short stable label used for quarantine."""

    def __init__(self, uri: str, reason: str, detail: str = "") -> None:
        self.uri = str(uri)
        self.reason = reason
        self.detail = detail
        message = f"{self.uri}: {reason}: {detail}" if detail else f"{self.uri}: {reason}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str, str]]:
        return (type(self), (self.uri, self.reason, self.detail))

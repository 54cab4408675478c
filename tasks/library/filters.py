"""Search filters and errors: light enough for a command line that only talks to the service.

Nothing here imports LanceDB, so `story search` answered by the resident search service never
pays for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from story.tasks.errors import StoryError


def sql_string(value: str) -> str:
    """A SQL string literal with quotes escaped."""
    return "'" + str(value).replace("'", "''") + "'"


class SearchError(StoryError, ValueError):
    """A query or its options are invalid, or the library cannot answer it."""


@dataclass
class SearchFilters:
    """Conditions every hit must meet; None means unconstrained."""

    min_duration: float | None = None
    max_duration: float | None = None
    min_aspect: float | None = None
    max_aspect: float | None = None
    source: str | None = None

    def where(self) -> str | None:
        """The filters as a SQL where-clause (None when there are none)."""
        clauses = []
        for column, low, high in (
            ("duration", self.min_duration, self.max_duration),
            ("aspect", self.min_aspect, self.max_aspect),
        ):
            for name, value in ((f"min_{column}", low), (f"max_{column}", high)):
                if value is not None and not (
                    isinstance(value, int | float) and math.isfinite(value)
                ):
                    raise SearchError(f"filter {name} must be a finite number, got {value!r}")
            if low is not None and high is not None and low > high:
                raise SearchError(f"filter min_{column} ({low}) is above max_{column} ({high})")
            if low is not None:
                clauses.append(f"{column} >= {float(low)!r}")
            if high is not None:
                clauses.append(f"{column} <= {float(high)!r}")
        if self.source is not None:
            clauses.append(f"source = {sql_string(self.source)}")
        return " AND ".join(clauses) or None

"""LanceDB imported with its REST client deferred still writes and searches a local table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import numpy as np
from story.tasks.library.fast_import import lancedb_deferred

lancedb = lancedb_deferred()
db = lancedb.connect(sys.argv[1])
rows = [{"id": i, "vector": np.array([i, 1.0], np.float32)} for i in range(5)]
table = db.create_table("t", data=rows)
hits = table.search(np.array([3.0, 1.0], np.float32)).limit(1).to_list()
built = [m for m in sys.modules if m.startswith("lance_namespace_urllib3_client.api.")]
print(hits[0]["id"], len(built))
"""


def test_deferred_lancedb_works_without_loading_the_rest_api(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "db")],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    found, api_modules = (int(x) for x in out.stdout.split())
    assert found == 3
    assert api_modules == 0  # the REST API classes, most of the import's cost, never load

"""Which render a request produced: the up-to-date check that needs no retrieval.

A record `<workspace>/cache/requests/<key>.json` maps a request fingerprint (and the renders
folder) to the render id it produced. A request seen before whose render is still complete is
answered at once; losing a record only costs a re-plan, which finds the same render id.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from story.tasks.atomic import write_json
from story.tasks.hashing import sha256_json
from story.tasks.provenance.manifest import LineageError, read_manifest
from story.tasks.render.request import RenderRequest

log = logging.getLogger(__name__)


class RequestRecords:
    """Request fingerprint -> render id, one small JSON file each under the workspace."""

    def __init__(self, workspace: str | Path) -> None:
        self.root = Path(workspace) / "cache" / "requests"

    def path(self, out_root: Path, request: RenderRequest) -> Path:
        key = sha256_json({"out": os.path.abspath(out_root), "request": request.fingerprint()})
        return self.root / f"{key[:32]}.json"

    def find(self, out_root: Path, request: RenderRequest) -> tuple[Path, dict[str, Any]] | None:
        """The complete render an identical earlier request produced, if it is still there."""
        record = self.path(out_root, request)
        try:
            rid = str(json.loads(record.read_text())["render_id"])
            if not (out_root / rid / "manifest.json").is_file():
                return None
            manifest = read_manifest(out_root / rid)
        except (OSError, ValueError, KeyError, TypeError, LineageError):
            return None
        if manifest.get("status") != "complete" or manifest.get("render_id") != rid:
            return None
        return out_root / rid, manifest

    def remember(self, out_root: Path, request: RenderRequest, render_id: str) -> None:
        """Note which render a request produced (atomically; a failure is only logged)."""
        record = self.path(out_root, request)
        try:
            write_json(record, {"render_id": render_id}, durable=False)
        except OSError as exc:
            log.warning("%s: cannot remember this request: %s", record, exc)

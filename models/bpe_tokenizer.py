"""open_clip's CLIP BPE tokenizer without importing open_clip (or torch).

Reads the BPE merges file that ships inside the open_clip package and reproduces
`open_clip.tokenizer.SimpleTokenizer` id for id (tests compare them), so a query can be
tokenised in a cold process in milliseconds instead of after open_clip's ~10 s of imports.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import regex

MERGES = 49152 - 256 - 2
SOT = "<start_of_text>"
EOT = "<end_of_text>"


def vocab_file() -> Path:
    """open_clip's bundled merges file, found without executing the package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open_clip is not installed: its BPE vocabulary is needed")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: open_clip's BPE vocabulary file is missing")
    return path


@lru_cache(maxsize=1)
def _byte_table() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _clean(text: str) -> str:
    if not text.isascii():
        import ftfy

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


class BPETokenizer:
    """Text -> CLIP BPE ids: start token, word pieces, end token, zero padding."""

    def __init__(self, path: str | Path | None = None) -> None:
        with gzip.open(path or vocab_file()) as handle:
            lines = handle.read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : MERGES + 1]]
        base = list(_byte_table().values())
        vocab = base + [v + "</w>" for v in base] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.sot = self.encoder[SOT]
        self.eot = self.encoder[EOT]
        self.vocab_size = len(vocab)
        self.pattern = regex.compile(
            rf"{SOT}|{EOT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
            regex.IGNORECASE,
        )
        self._cache: dict[str, list[int]] = {}

    def _word(self, token: str) -> list[int]:
        if token in self._cache:
            return self._cache[token]
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:], strict=False)}
            best = min(pairs, key=lambda p: self.ranks.get(p, 1 << 30))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids = [self.encoder[piece] for piece in word]
        self._cache[token] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Word-piece ids of `text`, without start / end tokens."""
        table = _byte_table()
        ids: list[int] = []
        for token in self.pattern.findall(_clean(text)):
            if token in (SOT, EOT):
                ids.append(self.encoder[token])
                continue
            ids.extend(self._word("".join(table[b] for b in token.encode("utf-8"))))
        return ids

    def batch(self, texts: list[str], context_length: int) -> np.ndarray:
        """(N, context_length) int64, truncated with the end token kept, as open_clip does."""
        out = np.zeros((len(texts), context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {row} is {type(text).__name__}, expected str")
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return out

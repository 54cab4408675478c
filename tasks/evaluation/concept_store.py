"""What `story eval concepts` keeps in its out folder, so a stopped run resumes and runs on two
cores share the work: finished (row, seed) cells, token packs and shared decoder tops, each
refused when it was made with other settings rather than read back as if it were current."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from story.tasks import atomic
from story.tasks.hashing import to_plain


def settings_changed(kept: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every setting that differs between two plain settings dicts: field -> (kept, wanted)."""
    return {
        k: (kept.get(k), wanted.get(k))
        for k in sorted({*kept, *wanted})
        if kept.get(k) != wanted.get(k)
    }


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


class Cells:
    """Finished (row, seed) scores and the first `keep` renders, one .npz each, read back on
    resume."""

    SETTINGS = "settings.json"

    def __init__(self, out: Path, settings: dict[str, Any] | None = None, keep: int = 6) -> None:
        """`settings`: what every cell depends on; a folder holding cells made with other
        settings is refused, so a rerun with another --tau or --steps cannot read old scores."""
        self.folder, self.keep = out / "cells", keep
        self.folder.mkdir(parents=True, exist_ok=True)
        if settings is None:
            return
        path, wanted = self.folder / self.SETTINGS, to_plain(settings)
        if path.is_file():
            changed = settings_changed(json.loads(path.read_text()), wanted)
            if changed:
                differences = ", ".join(
                    f"{k}: {there!r} there, {now!r} now" for k, (there, now) in changed.items()
                )
                raise ValueError(
                    f"{self.folder}: its scores were made with other settings ({differences}); "
                    "use another --out"
                )
        elif any(self.folder.glob("*.npz")):
            return  # cells from before settings were kept: read as they are
        else:
            atomic.write_text(path, json.dumps(wanted, indent=2) + "\n")

    def path(self, label: str, seed: int) -> Path:
        return self.folder / f"{_slug(label)}-seed{seed}.npz"

    def get(self, label: str, seed: int) -> tuple[dict[str, np.ndarray], list] | None:
        path = self.path(label, seed)
        if not path.is_file():
            return None
        with np.load(path) as data:
            scores = {k[len("score:") :]: data[k] for k in data.files if k.startswith("score:")}
            return scores, list(data["renders"])

    def put(self, label: str, seed: int, scores: dict[str, np.ndarray], renders: list) -> None:
        tmp = self.path(label, seed).with_suffix(".tmp.npz")
        arrays: dict[str, Any] = {f"score:{k}": np.asarray(v) for k, v in scores.items()}
        arrays["renders"] = np.stack(renders[: self.keep])
        np.savez_compressed(tmp, **arrays)
        tmp.replace(self.path(label, seed))

    def _claim_path(self, label: str, seed: int) -> Path:
        return self.path(label, seed).with_suffix(".claim")

    def claimant(self, label: str, seed: int) -> int | None:
        """The live process (pid) other than this one working on the cell, if any."""
        try:
            pid = int(self._claim_path(label, seed).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return None
        if pid in (0, os.getpid()):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # it stopped without finishing: the claim is stale
        except PermissionError:
            pass
        return pid

    def claim(self, label: str, seed: int) -> bool:
        """Take the cell for this process: False while another live process works on it."""
        path = self._claim_path(label, seed)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if self.claimant(label, seed) is not None:
                return False
            atomic.write_text(path, str(os.getpid()))  # a stale claim: take it over
            return True
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return True

    def release(self, label: str, seed: int) -> None:
        self._claim_path(label, seed).unlink(missing_ok=True)


Task = tuple[str, int, Callable[[], tuple[dict[str, np.ndarray], list]]]


def run_cells(
    cells: Cells, tasks: list[Task], log: Callable[[str], None] = print, poll: float = 10.0
) -> tuple[list[tuple[dict[str, np.ndarray], list]], dict[str, float]]:
    """Every task's (scores, renders), in the order given, and the seconds this process spent
    per label. A finished cell is read back; one another live process on the same out folder
    has claimed is left to it and waited for at the end (taken over if that process stopped),
    so runs on two cores split the cells between them instead of computing each twice."""
    results: dict[int, tuple[dict[str, np.ndarray], list]] = {}
    seconds: dict[str, float] = {}

    def attempt(index: int) -> bool:
        """Settle the cell now if it can be (read back, or claimed and made); False while
        another live process holds it."""
        label, seed, work = tasks[index]
        done = cells.get(label, seed)
        if done is None and cells.claim(label, seed):
            try:
                done = cells.get(label, seed)  # by another process just before the claim
                if done is None:
                    tick = time.monotonic()
                    done = work()
                    cells.put(label, seed, *done)
                    spent = time.monotonic() - tick
                    seconds[label] = seconds.get(label, 0.0) + spent
                    log(f"concepts: {label} seed {seed} ({spent:.0f}s)")
            finally:
                cells.release(label, seed)
        if done is not None:
            results[index] = done
        return done is not None

    waiting = [index for index in range(len(tasks)) if not attempt(index)]
    for index in waiting:
        while not attempt(index):
            time.sleep(poll)
    return [results[i] for i in range(len(tasks))], {k: round(v, 1) for k, v in seconds.items()}


PAIRED_ON = ("split", "shots", "character", "checkpoint")
"""Settings two runs must share for their cells to be paired shot by shot."""


def pairable(other: Path, settings: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """How another run's settings differ from `settings` (field: (there, here)); a run on other
    shots, or one without finished cells, cannot be paired and is refused."""
    path = other / "cells" / Cells.SETTINGS
    if not path.is_file():
        raise ValueError(f"{path.parent}: no finished cells with their settings to compare against")
    changed = settings_changed(json.loads(path.read_text()), to_plain(settings))
    clash = [k for k in PAIRED_ON if k in changed]
    if clash:
        there = ", ".join(f"{k}: {changed[k][0]!r}" for k in clash)
        raise ValueError(
            f"{other}: made on other shots ({there}); only runs on the same shots can be paired"
        )
    return changed


def stacked_rows(other: Path, labels: list[str], seeds: int) -> dict[str, dict[str, np.ndarray]]:
    """Another run's scores for every label of `labels` it holds for all `seeds`, stacked like
    this run's (shots x seeds)."""
    cells = Cells(other)
    rows: dict[str, dict[str, np.ndarray]] = {}
    for label in labels:
        found = [cells.get(label, seed) for seed in range(seeds)]
        if all(f is not None for f in found):
            scores = [f[0] for f in found if f is not None]
            rows[label] = {k: np.stack([s[k] for s in scores], axis=1) for k in scores[0]}
    return rows


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`: runs sharing an out folder (one per core) train each pack
    and decoder once, the later one waiting for and reading the earlier one's."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_pack(folder: Path, params: Any) -> Any:
    """The token pack kept in `folder`, or None; a pack trained with other settings is refused
    rather than reused."""
    from story.tasks.concepts.pack import ConceptPack

    if not (folder / "concept.json").is_file():
        return None
    pack = ConceptPack.load(folder)
    if pack.meta.get("params") != to_plain(asdict(params)):
        raise ValueError(
            f"{folder}: a pack trained with other settings is in the way; remove it or use "
            "another --out"
        )
    return pack


DECODER_WEIGHTS, DECODER_META = "decoder.safetensors", "decoder.json"


# Settings only the token and LoRA read: a decoder top (which reads neither) trained under
# other values of these is the same decoder, and serves a run that varies them.
TOKEN_ONLY = (
    "method",
    "steps",
    "buckets",
    "lr_table",
    "lr_lora",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
    "lora_max_t",
)


def _decoder_key(params: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    kept = {k: v for k, v in params.items() if k not in TOKEN_ONLY}
    return to_plain({"params": kept, "base_checkpoint": fingerprint})


def cached_decoder(folder: Path, params: Any, fingerprint: str) -> dict[str, torch.Tensor] | None:
    """The shared decoder top kept in `folder`, or None; one trained otherwise is refused."""
    from safetensors.torch import load_file

    meta = folder / DECODER_META
    if not meta.is_file():
        return None
    stored = json.loads(meta.read_text())
    if _decoder_key(stored.get("params") or {}, stored.get("base_checkpoint")) != _decoder_key(
        to_plain(asdict(params)), fingerprint
    ):
        raise ValueError(
            f"{folder}: a decoder top trained with other settings is in the way; remove it or "
            "use another --out"
        )
    return load_file(str(folder / DECODER_WEIGHTS))


def save_decoder(
    folder: Path,
    decoder: dict[str, torch.Tensor],
    params: Any,
    fingerprint: str,
    curve: list[dict[str, float]],
) -> None:
    from safetensors.torch import save

    atomic.write_bytes(
        folder / DECODER_WEIGHTS, save({k: v.contiguous() for k, v in decoder.items()})
    )
    meta = {**_decoder_key(to_plain(asdict(params)), fingerprint), "loss_curve": curve}
    atomic.write_text(folder / DECODER_META, json.dumps(meta, indent=2) + "\n")

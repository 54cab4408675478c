"""The md5 DVC recorded for a tracked path: its `.dvc` file, or an out of a `dvc.lock`.

Read straight from those YAML files (C loader, parsed once per file version per process)
rather than through `dvc.repo.Repo`, which costs 0.3 s or more per process to open and index
the repository; a test checks both give the same answers on this repository.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from story.tasks.settings import REPO_ROOT

_parsed: dict[str, tuple[tuple[int, int, int], Any]] = {}
_parsed_lock = threading.Lock()


def _dvc_outs(document: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(document, Mapping):
        return
    outs = document.get("outs")
    if isinstance(outs, list):
        yield from (o for o in outs if isinstance(o, Mapping))
    stages = document.get("stages")
    if isinstance(stages, Mapping):
        for stage in stages.values():
            yield from _dvc_outs(stage)


def _load_yaml(path: Path) -> Any:
    """The parsed file (None when unreadable), re-read only when its size or times change."""
    try:
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        key = str(path.resolve())
        with _parsed_lock:
            cached = _parsed.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    with _parsed_lock:
        _parsed[key] = (stamp, document)
    return document


def dvc_hash(path: str | os.PathLike[str], repo: str | Path | None = None) -> str | None:
    """The md5 DVC recorded for a tracked path (its `.dvc` file or a `dvc.lock` out), else None."""
    target = Path(path).resolve()
    sidecar = target.with_name(target.name + ".dvc")
    if sidecar.is_file():
        for out in _dvc_outs(_load_yaml(sidecar)):
            if (sidecar.parent / str(out.get("path", ""))).resolve() == target and out.get("md5"):
                return str(out["md5"])
    stop = Path(repo).resolve() if repo else REPO_ROOT
    for folder in [target.parent, *target.parent.parents]:
        lock = folder / "dvc.lock"
        if lock.is_file():
            for out in _dvc_outs(_load_yaml(lock)):
                if (folder / str(out.get("path", ""))).resolve() == target and out.get("md5"):
                    return str(out["md5"])
        if folder == stop:
            break
    return None

"""Studio processes: each started in its own session with a pid file, stopped as a whole tree.

A pid file holds the pid and the process's start time, so a reused pid is never taken for a
studio process. Stopping sends SIGTERM to the process group and to every descendant (Ray and
Prefect workers start children that may leave the group), waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psutil

STOP_WAIT_S = 15.0


def spawn(args: list[str], env: dict[str, str], pid_file: Path, log_file: Path) -> int:
    """Start `args` in a new session (its own process group), logging to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    started = psutil.Process(proc.pid).create_time()
    pid_file.write_text(json.dumps({"pid": proc.pid, "started": started, "args": args}) + "\n")
    return proc.pid


def running(pid_file: Path) -> psutil.Process | None:
    """The live process a pid file names (same pid and start time), else None."""
    if not pid_file.exists():
        return None
    try:
        record = json.loads(pid_file.read_text())
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["started"]) > 0.01 or not proc.is_running():
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, ValueError, KeyError, OSError):
        return None


def marked(markers: tuple[str, ...]) -> list[psutil.Process]:
    """Strays of a studio: processes whose command line names one of `markers` (the studio's
    own folders) and that were orphaned (parent 1) or whose parent is one of them, so a TD's
    `tail -f` of a studio log is never taken for one."""
    named: dict[int, psutil.Process] = {}
    parents: dict[int, int] = {}
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or ())
        if proc.pid != me and any(marker in line for marker in markers):
            named[proc.pid] = proc
            parents[proc.pid] = proc.info["ppid"]
    return [proc for pid, proc in named.items() if parents[pid] in (1, *named)]


def stop_tree(root: psutil.Process | None, extra: Sequence[psutil.Process] = ()) -> list[int]:
    """SIGTERM `root`'s group and every descendant (and `extra`); SIGKILL survivors. The pids
    that had to be killed are returned."""
    tree: list[psutil.Process] = list(extra)
    if root is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = [root, *root.children(recursive=True), *tree]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root.pid, signal.SIGTERM)
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(tree, timeout=STOP_WAIT_S)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=5)
    return [member.pid for member in alive]

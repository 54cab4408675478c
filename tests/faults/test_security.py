"""Security: stories and manifests cannot make the tool write outside its workspace; checkpoints
load without pickle; the servers the project starts listen on loopback only.

The manifest rule: a studio manifest may name media anywhere (absolute paths, `../`, object
stores), so media URIs are read-only inputs: they are opened for reading and never written
to, nothing is created next to them, and every output of an index run lands in the workspace.
Story paths are stricter (relative, inside the workspace); tests/faults/test_bad_stories.py
covers them.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from story.flows.build_index import build_index
from story.tasks.library.index import ClipIndex
from story.tasks.settings import Settings
from tests.faults.conftest import REPO, TEST_FILES, Recorder, tree_snapshot
from tests.flows.library_fixture import build_library

CODE = [REPO / "flows", REPO / "tasks", REPO / "models"]


@pytest.mark.usefixtures("prefect_harness")
def test_manifest_paths_outside_the_library_are_read_only_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Recorder
) -> None:
    lib = build_library(tmp_path / "lib", n_good=2, with_bad=False)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copyfile(TEST_FILES / "pan.mp4", outside / "pan.mp4")
    shutil.copyfile(TEST_FILES / "odd.mp4", outside / "odd.mp4")
    rows = [{"uri": g["uri"], "caption": g["caption"]} for g in lib.good]
    rows += [
        {"uri": "../elsewhere/pan.mp4", "caption": "climbs out of the library folder"},
        {"uri": str(outside / "odd.mp4"), "caption": "absolute path elsewhere"},
        {"uri": "/etc/passwd", "caption": "a system file"},
        {"uri": "../../../../../../../../etc/shadow", "caption": "a secret, by traversal"},
        {"uri": "file:///etc/hostname", "caption": "a system file as a file:// URI"},
    ]
    lib.manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    workspace = tmp_path / "ws"
    monkeypatch.chdir(lib.root)
    before = tree_snapshot(tmp_path)
    system = {p: p.stat().st_mtime_ns for p in map(Path, ("/etc/passwd", "/etc/hostname"))}

    summary = build_index(
        str(lib.manifest), Settings(workspace=workspace, shard_size=3).resolved(), use_ray=False
    )

    created = tree_snapshot(tmp_path) - before
    stray = sorted(p for p in created if not Path(p).is_relative_to(workspace))
    indexed = {Path(u).name for u in ClipIndex(str(workspace / "lancedb")).rows()["uri"]}
    reasons = {Path(q["uri"]).name: q["reason"] for q in summary["quarantined"]}
    text = json.dumps(summary, default=str)
    leaked = "root:" in text or any(line in text for line in _secrets())
    touched = [str(p) for p, mtime in system.items() if p.stat().st_mtime_ns != mtime]
    fault(
        "security: manifest URIs outside the library (../, absolute, /etc/*)",
        "read-only: 0 files created outside the workspace, system files quarantined, no content",
        f"read-only: {len(stray)} files created outside the workspace, "
        + (
            "system files quarantined"
            if {"passwd", "shadow", "hostname"} <= reasons.keys()
            else f"quarantined {sorted(reasons)}"
        )
        + (", content leaked" if leaked else ", no content"),
    )
    assert stray == []
    assert touched == []
    assert {"pan.mp4", "odd.mp4"} <= indexed
    assert reasons.keys() == {"passwd", "shadow", "hostname"}
    assert not leaked


def _secrets() -> list[str]:
    """Non-trivial lines of /etc/passwd that must never appear in a summary."""
    try:
        lines = Path("/etc/passwd").read_text().splitlines()
    except OSError:
        return []
    return [line for line in lines if len(line) > 12][:5]


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _unsafe_loads(source: str) -> list[str]:
    """Calls that can run pickled code: torch.load without weights_only=True, pickle-family
    loads, numpy loads with allow_pickle=True, and non-safe YAML loaders."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        name = f"{owner}.{node.func.attr}"
        weights_only = _keyword(node, "weights_only")
        allow_pickle = _keyword(node, "allow_pickle")
        loader = _keyword(node, "Loader")
        bad = (
            (name == "torch.load" and not _is_true(weights_only))
            or (
                owner in {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "marshal"}
                and node.func.attr in {"load", "loads"}
            )
            or (name in {"np.load", "numpy.load"} and _is_true(allow_pickle))
            or name in {"yaml.unsafe_load", "yaml.full_load", "yaml.load_all"}
            or (
                name == "yaml.load"
                and not (
                    isinstance(loader, ast.Attribute)
                    and loader.attr in {"SafeLoader", "CSafeLoader"}
                )
            )
        )
        if bad:
            found.append(f"line {node.lineno}: {ast.unparse(node)[:120]}")
    return found


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def test_the_unsafe_load_detector_sees_what_it_must() -> None:
    source = (
        "torch.load(p)\ntorch.load(p, weights_only=False)\ntorch.load(p, weights_only=True)\n"
        "pickle.loads(b)\nnp.load(p, allow_pickle=True)\nnp.load(p)\nyaml.load(t)\n"
        "yaml.load(t, Loader=yaml.SafeLoader)\nyaml.safe_load(t)\n"
    )
    assert [f.split(":")[0] for f in _unsafe_loads(source)] == [
        "line 1",
        "line 2",
        "line 4",
        "line 5",
        "line 7",
    ]


def test_checkpoints_and_caches_load_without_pickle(fault: Recorder) -> None:
    found = {
        str(path.relative_to(REPO)): hits
        for path in sorted(p for folder in CODE for p in folder.rglob("*.py"))
        if (hits := _unsafe_loads(path.read_text(encoding="utf-8")))
    }
    fault(
        "security: checkpoints load as safetensors / torch weights_only",
        "0 pickle-capable loads in flows/ tasks/ models/",
        f"{sum(map(len, found.values()))} pickle-capable loads in flows/ tasks/ models/"
        + (f": {found}" if found else ""),
    )
    assert found == {}


def _listening(keep: Callable[[psutil.Process, int], bool]) -> dict[str, set[str]]:
    """Listening TCP addresses of this process's descendants that `keep(process, port)` picks."""
    pids = {p.pid for p in psutil.Process().children(recursive=True)}
    out: dict[str, set[str]] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or conn.pid not in pids:
            continue
        try:
            process = psutil.Process(conn.pid)
            if keep(process, conn.laddr.port):
                out.setdefault(process.name(), set()).add(conn.laddr.ip)
        except psutil.NoSuchProcess:
            continue
    return out


def _is_ray(process: psutil.Process, port: int) -> bool:
    return process.name() in {"gcs_server", "raylet"} or any(
        "ray" in part for part in process.cmdline()[:3]
    )


def _loopback(ip: str) -> bool:
    """127.0.0.1, ::1, or 127.0.0.1 as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _public(addresses: dict[str, set[str]]) -> dict[str, list[str]]:
    return {
        name: sorted(ip for ip in ips if not _loopback(ip))
        for name, ips in addresses.items()
        if any(not _loopback(ip) for ip in ips)
    }


@pytest.mark.usefixtures("prefect_harness")
def test_the_prefect_server_listens_on_loopback_only(fault: Recorder) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_API_HOST

    url = str(PREFECT_API_URL.value())
    port = urlsplit(url).port
    served = _listening(lambda process, listening: listening == port)
    public = _public(served)
    fault(
        "security: Prefect server the pipeline starts binds to 127.0.0.1",
        "loopback only",
        "loopback only" if served and not public else f"{url}: {served}",
    )
    assert PREFECT_SERVER_API_HOST.value() == "127.0.0.1"
    assert urlsplit(url).hostname == "127.0.0.1"
    assert served and public == {}


@pytest.mark.usefixtures("ray_local")
def test_the_local_ray_listens_on_loopback_only(fault: Recorder) -> None:
    public = _public(_listening(_is_ray))
    fault(
        "security: local Ray started for a run binds to 127.0.0.1",
        "loopback only",
        "loopback only" if not public else f"listens on {public}",
    )
    assert public == {}


ENSURE_RAY_AND_LIST = """
import json, psutil, ray
from story.flows.executors.ray_session import ensure_ray
from story.tasks.settings import Settings

ensure_ray(Settings(ray_workers=1))
ray.get(ray.remote(lambda: 1).remote())
pids = {p.pid for p in psutil.Process().children(recursive=True)} | {psutil.Process().pid}
listening = {}
for conn in psutil.net_connections(kind="tcp"):
    if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
        name = psutil.Process(conn.pid).name()
        listening.setdefault(name, []).append(conn.laddr.ip)
print(json.dumps(listening))
ray.shutdown()
"""


def test_ensure_ray_starts_a_local_ray_on_loopback_only(fault: Recorder, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ENSURE_RAY_AND_LIST],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listening = {k: set(v) for k, v in json.loads(done.stdout.splitlines()[-1]).items()}
    public = _public(listening)
    fault(
        "security: `ensure_ray` (a run with no cluster address) starts Ray on 127.0.0.1",
        "loopback only",
        "loopback only" if listening and not public else f"listens on {public or listening}",
    )
    assert {"gcs_server", "raylet"} <= listening.keys()
    assert public == {}


def test_shipped_configs_do_not_open_services_to_all_interfaces_unasked(fault: Recorder) -> None:
    hits = []
    for path in sorted(
        [*(p for folder in CODE for p in folder.rglob("*.py")), *(REPO / "infra").rglob("*")]
    ):
        if path.is_file() and path.suffix in {".py", ".yaml", ".yml", ".toml", ".sh", ""}:
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if "0.0.0.0" in line and "kuberay" not in path.parts:
                    hits.append(f"{path.relative_to(REPO)}:{number}")
    fault(
        "security: no 0.0.0.0 bind in flows/ tasks/ models/ or infra/ "
        "(outside the in-cluster KubeRay spec)",
        "none",
        "none" if not hits else ", ".join(hits),
    )
    assert hits == []

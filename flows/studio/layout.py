"""Where a studio keeps its state and how its processes are configured (ports, env, paths)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from story.flows.studio.zombies import HEARTBEAT_S
from story.tasks.settings import Settings

HOST = "127.0.0.1"
POOL = "story-ray"
WORKER_NAME = "story-studio-worker"
PARTS = ("ray", "server", "worker")
# Ray turns a 127.0.0.1 node address into the host's routable IP unless this is "0".
RAY_SINGLE_HOST = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass(frozen=True)
class StudioLayout:
    """One studio: its folder in the workspace, its loopback ports and its Prefect database."""

    root: Path
    api_port: int
    ray_port: int
    database_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> StudioLayout:
        return cls(
            root=(Path(settings.workspace) / "studio").resolve(),
            api_port=settings.studio_api_port,
            ray_port=settings.studio_ray_port,
            database_url=settings.studio_database_url,
        )

    @classmethod
    def load(cls, settings: Settings) -> StudioLayout:
        """The layout a running (or last started) studio recorded; else the settings' one."""
        fresh = cls.from_settings(settings)
        if not fresh.state_file.exists():
            return fresh
        data = json.loads(fresh.state_file.read_text())
        return cls(Path(data["root"]), data["api_port"], data["ray_port"], data["database_url"])

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {**asdict(self), "root": str(self.root)}
        self.state_file.write_text(json.dumps(data, indent=2) + "\n")

    @property
    def state_file(self) -> Path:
        return self.root / "studio.json"

    def pid_file(self, part: str) -> Path:
        return self.root / "pids" / f"{part}.pid"

    def log_file(self, part: str) -> Path:
        return self.root / "logs" / f"{part}.log"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def ray_address(self) -> str:
        return f"{HOST}:{self.ray_port}"

    @property
    def ray_temp_dir(self) -> Path:
        """Ray's session folder: short (Ray's socket paths must stay under 107 characters) and
        unique to this studio, so its processes can be told from any other Ray on the host."""
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path("/tmp") / f"story-ray-{digest}"

    @property
    def database(self) -> str:
        """SQLite in the studio folder unless settings name a database (e.g. Postgres)."""
        return self.database_url or f"sqlite+aiosqlite:///{self.root / 'prefect.db'}"

    @property
    def ray_token_file(self) -> Path:
        return self.root / "ray_token"

    def ray_env(self) -> dict[str, str]:
        """What the Ray head and every driver joining it need: loopback addresses and this
        studio's own auth token (Ray 2.60 turns token auth on whenever a token exists, e.g.
        ~/.ray/auth_token; one token per studio keeps drivers and head in agreement)."""
        if not self.ray_token_file.exists():
            self.ray_token_file.parent.mkdir(parents=True, exist_ok=True)
            self.ray_token_file.write_text(secrets.token_hex(32))
            self.ray_token_file.chmod(0o600)
        token = self.ray_token_file.read_text().strip()
        return {**RAY_SINGLE_HOST, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}

    def prefect_env(self) -> dict[str, str]:
        """What every Prefect client of this studio needs: its API and where results persist."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_URL": self.ui_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_LOCAL_STORAGE_PATH": str(self.root / "results"),
        }

    def server_env(self) -> dict[str, str]:
        return {
            **self.prefect_env(),
            "PREFECT_HOME": str(self.root / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database,
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(self.api_port),
            "PREFECT_UI_API_URL": self.api_url,
        }

    def worker_env(self, settings: Settings) -> dict[str, str]:
        """The worker's environment, inherited by its flow runs: this studio's Prefect API, the
        Ray head to join and every setting the studio was started with (as STORY_*)."""
        env = {**self.prefect_env(), **self.ray_env(), **story_env(settings)}
        env["STORY_RAY_ADDRESS"] = self.ray_address
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_S)
        env["PREFECT_WORKER_QUERY_SECONDS"] = "3"
        return env


def story_env(settings: Settings) -> dict[str, str]:
    """`settings` as STORY_* variables (absolute paths), so child processes resolve the same."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, dict | list):
            text = json.dumps(value)
        elif name in ("workspace", "checkpoints"):
            text = str(Path(value).resolve())
        else:
            text = str(value)
        env[f"STORY_{name.upper()}"] = text
    return env


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`, with the venv's scripts on PATH."""
    env = dict(os.environ, **extra)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env

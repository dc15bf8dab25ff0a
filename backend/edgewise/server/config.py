"""Settings of the web app (from the environment) and the catalog of loadable models and tasks.

Environment variables (all optional):
    EDGEWISE_DATA            data directory holding edgewise.sqlite3 (default ./data)
    EDGEWISE_MAX_UPLOAD_MB   largest accepted request body, in MB (default 20)
    EDGEWISE_MAX_PAIRS       most prompt pairs in one dataset (default 10000)
    EDGEWISE_MAX_QUEUED      most runs waiting in the queue; more answer 429 (default 16)
    EDGEWISE_CONCURRENCY     runs computed at once (default 1: one device runs one model's passes)
    EDGEWISE_TOKEN           when set, every /api call needs `Authorization: Bearer <token>` (the event
                             stream GET also takes ?token=, as EventSource cannot send headers)
    EDGEWISE_ALLOWED_HOSTS   extra Host names (comma-separated) served without a token (default: only
                             localhost, 127.0.0.1 and ::1, against DNS rebinding)
    EDGEWISE_MODEL_DIRS      directories (separated by ':') whose local checkpoints may be loaded by path
    EDGEWISE_DEVICE          torch device (default cuda when available, else cpu)
    EDGEWISE_FRONTEND        the frontend directory (default <repo>/frontend)
    EDGEWISE_CURVE_POINTS    faithfulness-curve points computed with each run (default 24; each costs
                             one patched forward pass per batch)
    EDGEWISE_ACTIVATION_CACHE_MB  most memory a run's cached clean/ablated activations may take for
                             fast faithfulness requests (default 2048); above it each request recomputes them
    EDGEWISE_RAY_ADDRESS     compute runs and faithfulness requests on a Ray cluster: `local` (started
                             here), `auto` (the one `ray start --head` runs here) or `ray://host:port`;
                             several runs then compute at once (needs the extra edgewise[ray])
    EDGEWISE_RAY_WORKERS     model replicas on the cluster (default: one per GPU; 2 CPU actors without GPUs)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO_FRONTEND = Path(__file__).resolve().parents[3] / "frontend"


class ModelNameError(ValueError):
    """A model name that cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class Catalog:
    """What can be loaded here. Tests hand in tiny models; the default reads the bundled zoo."""

    load_model: Callable  # (name, device, dtype=None, progress=None) -> HookedTransformer; progress(fraction, detail)
    list_models: Callable[[], list[dict]]
    list_tasks: Callable[[], list[dict]]
    task_pairs_path: Callable[[str], Path]  # task name -> its pairs.jsonl (ValueError if unknown)
    allow_hub: bool = True  # accept TransformerLens pretrained names (loaded only when the hub is reachable)

    @classmethod
    def default(cls) -> "Catalog":
        from .. import models, tasks

        return cls(load_model=models.load_model,
                   list_models=models.list_models, list_tasks=tasks.list_tasks,
                   task_pairs_path=lambda name: tasks.load_task(name).pairs_path)


class SettingsError(ValueError):
    """An environment variable that cannot be used; the message names it."""


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass
class Settings:
    data_dir: Path = Path("data")
    max_upload_mb: float = 20.0
    max_pairs: int = 10_000
    max_queued: int = 16  # queued runs beyond this answer 429
    concurrency: int = 1  # runs computed at once
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()  # Host names served without a token, beside LOCAL_HOSTS
    model_dirs: tuple[Path, ...] = ()
    device: str | None = None
    frontend_dir: Path = REPO_FRONTEND
    model_cache_size: int = 2  # loaded models kept in memory
    evaluator_cache_size: int = 2  # runs whose clean/ablated activations are kept for /faithfulness
    activation_cache_mb: float = 2048.0  # above this a run's evaluator recomputes activations per request
    curve_points: int = 24  # log-spaced k of the faithfulness curve computed with each run
    ray_address: str | None = None  # runs compute on this Ray cluster (server/cluster.py)
    ray_workers: int | None = None  # its model replicas (None: one per GPU, else 2)
    busy_timeout_s: float = 20.0  # how long a queued /faithfulness waits for the device before a 503
    max_waiting: int = 16  # /faithfulness requests waiting for the device; more answer 503 at once
    catalog: Catalog | None = None

    @classmethod
    def from_env(cls, env=None, **overrides) -> "Settings":
        env = os.environ if env is None else env

        def num(key, cast, default):
            raw = env.get(key) or ""
            try:
                value = cast(raw) if raw.strip() else default
            except ValueError:
                raise SettingsError(f"{key}={raw!r} is not a number") from None
            if value <= 0:
                raise SettingsError(f"{key}={raw!r} must be positive")
            return value

        s = cls(data_dir=Path(env.get("EDGEWISE_DATA") or "data"),
                max_upload_mb=num("EDGEWISE_MAX_UPLOAD_MB", float, 20.0),
                max_pairs=num("EDGEWISE_MAX_PAIRS", int, 10_000),
                max_queued=num("EDGEWISE_MAX_QUEUED", int, 16),
                concurrency=num("EDGEWISE_CONCURRENCY", int, 1),
                token=env.get("EDGEWISE_TOKEN") or None,
                allowed_hosts=tuple(h.strip().lower() for h in (env.get("EDGEWISE_ALLOWED_HOSTS") or "").split(",")
                                    if h.strip()),
                model_dirs=tuple(Path(p) for p in (env.get("EDGEWISE_MODEL_DIRS") or "").split(os.pathsep) if p),
                device=env.get("EDGEWISE_DEVICE") or None,
                frontend_dir=Path(env.get("EDGEWISE_FRONTEND") or REPO_FRONTEND),
                curve_points=num("EDGEWISE_CURVE_POINTS", int, 24),
                activation_cache_mb=num("EDGEWISE_ACTIVATION_CACHE_MB", float, 2048.0),
                ray_address=ray_address(env.get("EDGEWISE_RAY_ADDRESS")),
                ray_workers=num("EDGEWISE_RAY_WORKERS", int, None) if env.get("EDGEWISE_RAY_WORKERS") else None)
        for k, v in overrides.items():
            setattr(s, k, v)
        return s

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def dtypes(self) -> list[str]:
        """Weight dtypes a run may ask for: half precisions only on cuda (CPU kernels are slow or missing)."""
        return ["float32", "bfloat16", "float16"] if self.resolved_device().startswith("cuda") else ["float32"]


def ray_address(raw: str | None) -> str | None:
    """EDGEWISE_RAY_ADDRESS: local, auto, ray://host:port or host:port (a head's GCS); empty: no cluster."""
    raw = (raw or "").strip()
    if not raw:
        return None
    if raw in ("local", "auto") or re.fullmatch(r"(ray://)?[\w.\-\[\]:]+:\d+", raw):
        return raw
    raise SettingsError(f"EDGEWISE_RAY_ADDRESS={raw!r}: expected local, auto, ray://host:port or host:port")


def looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~")) or ":" in name


def resolve_model_name(name: str, catalog: Catalog, model_dirs) -> str:
    """The name to load: a listed model, a directory inside EDGEWISE_MODEL_DIRS, or a hub name.
    ModelNameError (422 unknown, 400 a path outside the allowed directories) otherwise."""
    if not name or not name.strip():
        raise ModelNameError("model name is empty")
    if len(name) > 500 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ModelNameError("model name is over 500 characters or holds control characters (e.g. NUL)")
    if name in {m["name"] for m in catalog.list_models()}:
        return name
    hub_like = not name.startswith(("/", ".", "~")) and ".." not in name and "\\" not in name
    if catalog.allow_hub and hub_like and _is_pretrained_name(name):  # e.g. "gpt2", "EleutherAI/pythia-70m"
        return name
    if looks_like_path(name):
        path = Path(name).expanduser().resolve()
        for d in model_dirs:
            if path.is_relative_to(Path(d).expanduser().resolve()):
                if not (path / "config.json").is_file():
                    raise ModelNameError(f"model path {name!r} has no config.json: not a Hugging Face checkpoint")
                return str(path)
        allowed = ", ".join(str(d) for d in model_dirs) or "none are set"
        raise ModelNameError(f"model {name!r} looks like a path outside the allowed model directories "
                             f"(EDGEWISE_MODEL_DIRS: {allowed}); refused", status=400)
    known = ", ".join(m["name"] for m in catalog.list_models())
    raise ModelNameError(f"unknown model {name!r}; models here: {known}")


def _is_pretrained_name(name: str) -> bool:
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name

        get_official_model_name(name)
        return True
    except Exception:  # noqa: BLE001 - TL raises ValueError for unknown names
        return False


def local_models(model_dirs) -> list[dict]:
    """Hugging Face checkpoints inside the allowed directories (see edgewise.models.local_models)."""
    from .. import models

    return models.local_models(model_dirs)

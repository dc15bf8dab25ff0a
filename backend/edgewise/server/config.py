"""Settings of the web app (from the environment) and the catalog of loadable models and tasks.

Environment variables (all optional):
    EDGEWISE_DATA            data directory holding edgewise.sqlite3 (default ./data)
    EDGEWISE_MAX_UPLOAD_MB   largest accepted request body, in MB (default 20)
    EDGEWISE_MAX_PAIRS       most prompt pairs in one dataset (default 10000)
    EDGEWISE_TOKEN           when set, every /api call needs `Authorization: Bearer <token>` (or ?token=)
    EDGEWISE_MODEL_DIRS      directories (separated by ':') whose local checkpoints may be loaded by path
    EDGEWISE_DEVICE          torch device (default cuda when available, else cpu)
    EDGEWISE_FRONTEND        the frontend directory (default <repo>/frontend)
    EDGEWISE_CURVE_POINTS    faithfulness-curve points computed with each run (default 24; each costs
                             one patched forward pass per batch)
"""
from __future__ import annotations

import os
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

    load_model: Callable  # (name, device) -> HookedTransformer
    list_models: Callable[[], list[dict]]
    list_tasks: Callable[[], list[dict]]
    task_pairs_path: Callable[[str], Path]  # task name -> its pairs.jsonl (ValueError if unknown)
    allow_hub: bool = True  # accept TransformerLens pretrained names (loaded only when the hub is reachable)

    @classmethod
    def default(cls) -> "Catalog":
        from .. import models, tasks

        return cls(load_model=lambda name, device: models.load_model(name, device=device),
                   list_models=models.list_models, list_tasks=tasks.list_tasks,
                   task_pairs_path=lambda name: tasks.load_task(name).pairs_path)


@dataclass
class Settings:
    data_dir: Path = Path("data")
    max_upload_mb: float = 20.0
    max_pairs: int = 10_000
    token: str | None = None
    model_dirs: tuple[Path, ...] = ()
    device: str | None = None
    frontend_dir: Path = REPO_FRONTEND
    model_cache_size: int = 2  # loaded models kept in memory
    evaluator_cache_size: int = 2  # runs whose clean/ablated activations are kept for /faithfulness
    curve_points: int = 24  # log-spaced k of the faithfulness curve computed with each run
    busy_timeout_s: float = 20.0  # how long /faithfulness waits for the device before answering 503
    catalog: Catalog | None = None

    @classmethod
    def from_env(cls, env=None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        s = cls(data_dir=Path(env.get("EDGEWISE_DATA") or "data"),
                max_upload_mb=float(env.get("EDGEWISE_MAX_UPLOAD_MB") or 20),
                max_pairs=int(env.get("EDGEWISE_MAX_PAIRS") or 10_000),
                token=env.get("EDGEWISE_TOKEN") or None,
                model_dirs=tuple(Path(p) for p in (env.get("EDGEWISE_MODEL_DIRS") or "").split(os.pathsep) if p),
                device=env.get("EDGEWISE_DEVICE") or None,
                frontend_dir=Path(env.get("EDGEWISE_FRONTEND") or REPO_FRONTEND),
                curve_points=int(env.get("EDGEWISE_CURVE_POINTS") or 24))
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


def looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~")) or ":" in name


def resolve_model_name(name: str, catalog: Catalog, model_dirs) -> str:
    """The name to load: a listed model, a directory inside EDGEWISE_MODEL_DIRS, or a hub name.
    ModelNameError (422 unknown, 400 a path outside the allowed directories) otherwise."""
    if not name or not name.strip():
        raise ModelNameError("model name is empty")
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

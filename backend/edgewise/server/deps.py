"""What routes receive through Depends: the app context, the bearer-token check, and error helpers."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request

from .config import Catalog, Settings
from .engine import Engine
from .jobs import EventHub, JobQueue
from .store import Store
from .views import ScoreViews


@dataclass
class Context:
    settings: Settings
    catalog: Catalog
    store: Store
    hub: EventHub
    jobs: JobQueue
    engine: Engine
    views: ScoreViews


def get_ctx(request: Request) -> Context:
    return request.app.state.ctx


def api_error(status: int, message: str, *, field: str | None = None, row: int | None = None,
              headers: dict | None = None) -> HTTPException:
    """An HTTPException whose body is {"detail": {"message", "field"?, "row"?}}."""
    detail = {"message": message}
    if field is not None:
        detail["field"] = field
    if row is not None:
        detail["row"] = row
    return HTTPException(status, detail=detail, headers=headers)


def is_event_stream(request: Request) -> bool:
    return request.method == "GET" and request.url.path.startswith("/api/runs/") and request.url.path.endswith("/events")


def require_token(request: Request) -> None:
    """With EDGEWISE_TOKEN set: `Authorization: Bearer <token>`; `?token=` only on the event stream's
    GET (EventSource cannot set headers). Compared in constant time; never logged (security.py)."""
    token = request.app.state.ctx.settings.token
    if not token:
        return
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not given and is_event_stream(request):
        given = request.query_params.get("token", "")
    if not given or not secrets.compare_digest(given.encode(), token.encode()):
        where = "; ?token= is accepted on GET /api/runs/{id}/events only" if "token" in request.query_params else ""
        raise api_error(401, f"missing or wrong token: send `Authorization: Bearer <EDGEWISE_TOKEN>`{where}",
                        field="authorization", headers={"WWW-Authenticate": "Bearer"})


def get_run_or_404(ctx: Context, run_id: str) -> dict:
    run = ctx.jobs.overlay(ctx.store.get_run(run_id))
    if run is None:
        raise api_error(404, f"no run {run_id!r}", field="run_id")
    return run

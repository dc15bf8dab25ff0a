"""What routes receive through Depends: the app context, the bearer-token check, and error helpers."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Query, Request, Response

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


@dataclass
class Page:
    """A listing's window: `limit` items from `offset`, newest first; the answer's X-Total-Count holds the total."""

    limit: int
    offset: int

    def answer(self, response: Response, items_and_total: tuple[list, int]) -> list:
        items, total = items_and_total
        response.headers["X-Total-Count"] = str(total)
        return items


def paging(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=10**9)) -> Page:
    return Page(limit, offset)

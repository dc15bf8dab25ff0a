"""The FastAPI app factory: `create_app(settings)` wires store, job queue, engine and routes.

    uvicorn --factory edgewise.server.app:create_app     # settings from the environment

/api/* is the JSON API (bearer token when EDGEWISE_TOKEN is set); /docs documents it. The page is
served from the frontend directory: / , /css/*, /js/*, and /vendor/* from its node_modules.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from .. import __version__
from .config import Catalog, Settings
from .deps import Context, api_error, require_token
from .engine import Engine
from .jobs import EventHub, JobQueue
from .routes import circuits, datasets, health, models, results, runs, tasks
from .store import Store
from .views import ScoreViews

log = logging.getLogger("edgewise.server")
VENDOR = {"cytoscape.min.js": "cytoscape/dist/cytoscape.min.js",
          "plotly-basic.min.js": "plotly.js-basic-dist-min/plotly-basic.min.js"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    catalog = settings.catalog or Catalog.default()
    store = Store(settings.data_dir)
    if store.n_interrupted:
        log.warning("%d run(s) were interrupted by the last shutdown; marked failed", store.n_interrupted)
    hub = EventHub()
    engine = Engine(settings, store, catalog)
    jobs = JobQueue(store, hub, engine.execute)
    ctx = Context(settings, catalog, store, hub, jobs, engine, ScoreViews(store))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs.start()
        yield
        jobs.stop()

    app = FastAPI(title="edgewise", version=__version__, lifespan=lifespan,
                  description="Edge Attribution Patching: score every edge of a transformer, explore the circuit. "
                              "Errors answer {\"detail\": {\"message\", \"field\"?, \"row\"?}}.")
    app.state.ctx = ctx
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, max_mb=settings.max_upload_mb)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
    for r in (health, models, tasks, datasets, runs, results, circuits):
        app.include_router(r.router, prefix="/api", dependencies=[Depends(require_token)])
    mount_frontend(app, Path(settings.frontend_dir))
    return app


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, reshaped so the message names the field: {"detail": {"message", "field", "errors"}}."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or None
    msg = first.get("msg", "invalid")
    if first.get("type") == "json_invalid":
        msg = f"request body is not valid JSON: {first.get('ctx', {}).get('error', msg)}"
    detail = {"message": f"{field}: {msg}" if field else msg, "field": field,
              "errors": jsonable_encoder(errors, custom_encoder={Exception: str})}
    return JSONResponse({"detail": detail}, status_code=422)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not a bad request: logged with its traceback, answered in the API's error shape."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": {"message": f"internal error: {type(exc).__name__}: {exc}"}}, status_code=500)


class BodyLimit:
    """ASGI middleware: a request body over the upload cap is a 413, whether or not it declares its length."""

    def __init__(self, app, max_bytes: int, max_mb: float):
        self.app, self.max_bytes, self.max_mb = app, max_bytes, max_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._too_large(int(length), scope, receive, send)
        chunks, total = [], 0
        while True:  # buffer the body (at most the cap), then replay it to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_bytes:
                return await self._too_large(total, scope, receive, send, more=True)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, size, scope, receive, send, more=False):
        over = "over" if more else ""
        msg = (f"request body is {over} {size / 2**20:.1f} MB; the upload limit is {self.max_mb:g} MB "
               "(EDGEWISE_MAX_UPLOAD_MB)").replace("  ", " ")
        await JSONResponse({"detail": {"message": msg}}, status_code=413)(scope, receive, send)


def mount_frontend(app: FastAPI, root: Path) -> None:
    """The page and its static files; vendor libraries from node_modules, 404 when absent (the page
    then falls back to a CDN)."""
    index = root / "index.html"

    @app.get("/", include_in_schema=False)
    def page():
        if not index.is_file():
            raise api_error(404, f"no frontend at {root} (set EDGEWISE_FRONTEND); the API is at /api, docs at /docs")
        return FileResponse(index, media_type="text/html")

    @app.get("/vendor/{name}", include_in_schema=False)
    def vendor(name: str):
        path = root / "node_modules" / VENDOR[name] if name in VENDOR else None
        if path is None or not path.is_file():
            raise api_error(404, f"vendor file {name!r} is not installed (run `npm ci` in {root})")
        return FileResponse(path, media_type="text/javascript")

    @app.get("/css/{path:path}", include_in_schema=False)
    def css(path: str):
        return static_file(root / "css", path)

    @app.get("/js/{path:path}", include_in_schema=False)
    def js(path: str):
        return static_file(root / "js", path)


def static_file(folder: Path, rel: str) -> FileResponse:
    """A file under `folder` (never outside it), 404 otherwise."""
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise api_error(404, f"no file {rel!r} in {folder.name}/")
    media = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}.get(path.suffix)
    return FileResponse(path, media_type=media)

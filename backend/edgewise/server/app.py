"""The FastAPI app factory: `create_app(settings)` wires store, job queue, engine and routes.

    uvicorn --factory edgewise.server.app:create_app     # settings from the environment

/api/* is the JSON API (bearer token when EDGEWISE_TOKEN is set); /docs documents it with swagger-ui
served from the frontend's node_modules (no CDN). The page is served from the frontend directory:
/ , /css/*, /js/*, and /vendor/* from its node_modules. Every error answers
{"detail": {"message", "field"?, "row"?}}; a 500 never shows internal exception text.
"""
from __future__ import annotations

import logging
import sqlite3
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .config import Catalog, Settings
from .deps import Context, api_error, require_token
from .engine import Engine
from .jobs import EventHub, JobQueue
from .routes import circuits, datasets, export, health, models, results, runs, tasks
from .security import BodyLimit, Guard, SecurityHeaders, docs_csp, redact_tokens
from .store import Store
from .views import ScoreViews

log = logging.getLogger("edgewise.server")
VENDOR = {"cytoscape.min.js": "cytoscape/dist/cytoscape.min.js",
          "plotly-basic.min.js": "plotly.js-basic-dist-min/plotly-basic.min.js",
          "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
          "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
          "swagger-favicon.png": "swagger-ui-dist/favicon-32x32.png"}
MEDIA = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".png": "image/png"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    catalog = settings.catalog or Catalog.default()
    redact_tokens()
    store = Store(settings.data_dir)
    if store.n_interrupted:
        log.warning("%d run(s) were interrupted by the last shutdown; marked failed", store.n_interrupted)
    hub = EventHub()
    engine = Engine(settings, store, catalog)
    views = ScoreViews(store)
    # on a Ray cluster, up to one run per model replica computes at once
    concurrency = max(settings.concurrency, engine.cluster.workers) if engine.cluster else settings.concurrency
    jobs = JobQueue(store, hub, engine.execute, concurrency=concurrency)
    ctx = Context(settings, catalog, store, hub, jobs, engine, views)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs.start()
        yield
        jobs.stop()

    app = FastAPI(title="edgewise", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Edge Attribution Patching: score every edge of a transformer, explore the circuit. "
                              "Errors answer {\"detail\": {\"message\", \"field\"?, \"row\"?}}.")
    app.state.ctx = ctx
    # added innermost first: SecurityHeaders wraps Guard wraps BodyLimit wraps the routes
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, max_mb=settings.max_upload_mb)
    app.add_middleware(Guard, settings=settings)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(sqlite3.Error, storage_error)
    app.add_exception_handler(Exception, internal_error)
    for r in (health, models, tasks, datasets, runs, results, export, circuits):
        app.include_router(r.router, prefix="/api", dependencies=[Depends(require_token)])
    mount_docs(app)
    mount_frontend(app, Path(settings.frontend_dir))
    return app


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, reshaped so the message names the field: {"detail": {"message", "field", "errors"}}."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header")]
    if len(loc) > 1 and loc[0] == "body":
        loc = loc[1:]
    field = ".".join(loc) or "body"
    msg = first.get("msg", "invalid")
    if first.get("type") == "json_invalid":
        field, msg = "body", f"request body is not valid JSON: {first.get('ctx', {}).get('error', msg)}"
    # each error's location, message and type; never its `input` (it may be NaN, or the whole body)
    listed = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")}
              for e in errors[:20]]
    detail = {"message": f"{field}: {msg}", "field": field, "errors": listed}
    return JSONResponse({"detail": detail}, status_code=422)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """HTTPExceptions in the API's shape; the framework's own (unknown path, wrong method, an
    unparsable body) get a message and the field at fault."""
    detail = exc.detail
    status = exc.status_code
    if not isinstance(detail, dict):
        field = {404: "path", 405: "method"}.get(status, "body")
        message = str(detail)
        if status == 400 and field == "body":  # FastAPI could not parse a JSON body
            cause = exc.__cause__
            status, message = 422, ("request body nests too deeply" if isinstance(cause, RecursionError) else
                                    f"request body cannot be parsed ({type(cause).__name__ if cause else message})")
        elif status == 404:
            message = f"no such path: {request.method} {request.url.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        detail = {"message": message, "field": field}
    return JSONResponse({"detail": detail}, status_code=status, headers=getattr(exc, "headers", None))


async def storage_error(request: Request, exc: sqlite3.Error) -> JSONResponse:
    """The data directory failed (disk full, I/O error): the server lives on; try again later."""
    log.error("storage error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": {"message": f"the data store failed ({exc}); is the disk full? Try again later",
                                    "field": "storage"}}, status_code=503, headers={"Retry-After": "10"})


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not a bad request: logged with its traceback under a reference the answer gives."""
    ref = uuid.uuid4().hex[:8]
    log.error("unhandled error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": {"message": f"internal error (reference {ref} in the server log)"}},
                        status_code=500)


def mount_docs(app: FastAPI) -> None:
    """/docs: swagger-ui from the frontend's node_modules, under a CSP that admits its one inline script."""

    @app.get("/docs", include_in_schema=False)
    def docs():
        page = get_swagger_ui_html(openapi_url=app.openapi_url, title="edgewise API",
                                   swagger_js_url="/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/vendor/swagger-ui.css",
                                   swagger_favicon_url="/vendor/swagger-favicon.png")
        html = page.body.decode()
        page.headers["content-security-policy"] = docs_csp(html)
        return page


def mount_frontend(app: FastAPI, root: Path) -> None:
    """The page and its static files; vendor libraries from node_modules, 404 when absent (the page
    then falls back to a CDN)."""
    index = root / "index.html"

    @app.get("/", include_in_schema=False)
    def page():
        if not index.is_file():
            raise api_error(404, f"no frontend at {root} (set EDGEWISE_FRONTEND); the API is at /api, docs at /docs",
                            field="path")
        return FileResponse(index, media_type="text/html")

    @app.get("/vendor/{name}", include_in_schema=False)
    def vendor(name: str):
        path = root / "node_modules" / VENDOR[name] if name in VENDOR else None
        if path is None or not path.is_file():
            raise api_error(404, f"vendor file {name!r} is not installed (run `npm ci` in {root})", field="path")
        return FileResponse(path, media_type=MEDIA.get(path.suffix))

    @app.get("/css/{path:path}", include_in_schema=False)
    def css(path: str):
        return static_file(root / "css", path)

    @app.get("/js/{path:path}", include_in_schema=False)
    def js(path: str):
        return static_file(root / "js", path)


def static_file(folder: Path, rel: str) -> FileResponse:
    """A file under `folder` (never outside it), 404 otherwise."""
    if "\x00" in rel:
        raise api_error(404, "no such file", field="path")
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise api_error(404, f"no file {rel!r} in {folder.name}/", field="path")
    return FileResponse(path, media_type=MEDIA.get(path.suffix))

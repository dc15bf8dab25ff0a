"""What stands between the network and the routes (pure ASGI middleware, outermost first):

- `Guard`: against DNS rebinding, with no token configured only local Host names (and
  EDGEWISE_ALLOWED_HOSTS) are served; against cross-site writes, a POST/PATCH/PUT/DELETE whose
  Origin is another site (or whose Sec-Fetch-Site says cross-site) is refused, token or not.
- `BodyLimit`: a request body over the cap is a 413, counted as it streams (never buffered here).
- `SecurityHeaders`: a Content-Security-Policy the page works under, nosniff, no framing, no referrer.
- `redact_tokens`: `?token=` values never reach a log line.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import re

from fastapi import HTTPException
from fastapi.responses import JSONResponse

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# the page loads cytoscape/plotly from /vendor/, falling back to jsDelivr only when they are missing;
# plotly sets inline styles; PNG export draws into data:/blob: images
PAGE_CSP = ("default-src 'self'; script-src 'self' https://cdn.jsdelivr.net; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer"), (b"cross-origin-opener-policy", b"same-origin"),
           (b"cross-origin-resource-policy", b"same-origin")]


def docs_csp(html: str) -> str:
    """The page's CSP, plus the hash of the one inline script swagger-ui's HTML starts itself with."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in re.findall(r"<script>(.*?)</script>", html, re.S))
    return PAGE_CSP.replace("script-src 'self'", f"script-src 'self' {hashes}")


def error(status: int, message: str, field: str) -> JSONResponse:
    return JSONResponse({"detail": {"message": message, "field": field}}, status_code=status)


def host_name(host: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:80' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    def __init__(self, app, settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        allowed = ("localhost", "127.0.0.1", "::1", *self.settings.allowed_hosts)
        if not self.settings.token and host_name(host) not in allowed:
            return await error(400, f"Host {host!r} is not served without EDGEWISE_TOKEN (a guard against DNS "
                               "rebinding); open the app at http://127.0.0.1:<port>/, or add the name to "
                               "EDGEWISE_ALLOWED_HOSTS", "host")(scope, receive, send)
        if scope["method"] in UNSAFE:
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site", "")
            scheme = scope.get("scheme", "http")
            if origin is not None and origin.lower() != f"{scheme}://{host}".lower():
                return await error(403, f"cross-site request refused: Origin {origin!r} is not this server "
                                   f"({scheme}://{host})", "origin")(scope, receive, send)
            if origin is None and site in ("cross-site", "same-site"):
                return await error(403, f"cross-site request refused (Sec-Fetch-Site: {site})",
                                   "origin")(scope, receive, send)
        return await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the cap; an HTTPException, so FastAPI's body parsing and
    the routes let it through to the 413 answer."""

    def __init__(self, size: int, max_mb: float, more: bool):
        over = "over " if more else ""
        super().__init__(413, {"message": f"request body is {over}{size / 2**20:.1f} MB; the upload limit is "
                                          f"{max_mb:g} MB (EDGEWISE_MAX_UPLOAD_MB)", "field": "body"})


class BodyLimit:
    def __init__(self, app, max_bytes: int, max_mb: float):
        self.app, self.max_bytes, self.max_mb = app, max_bytes, max_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            exc = BodyTooLarge(int(length), self.max_mb, more=False)
            return await JSONResponse({"detail": exc.detail}, 413)(scope, receive, send)
        total = 0
        started = False

        async def counted():
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise BodyTooLarge(total, self.max_mb, more=True)
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as exc:  # raised where no handler turned it into the answer
            if not started:
                await JSONResponse({"detail": exc.detail}, 413)(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in have]
                if b"content-security-policy" not in have:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


_TOKEN = re.compile(r"([?&]token=)[^&\s\"]*", re.I)


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _TOKEN.sub(r"\1***", record.msg)
        return True


def redact_tokens() -> None:
    """Keep ?token= values out of uvicorn's access and error logs (installed once per process)."""
    for name in ("uvicorn.access", "uvicorn.error", "edgewise.server"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Redact) for f in logger.filters):
            logger.addFilter(_Redact())

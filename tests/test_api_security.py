"""Cross-site writes and DNS rebinding refused, security headers with a CSP, /docs served offline.
(The token's handling in a real server's logs: test_api_hardening.py.)"""
import base64
import hashlib
import re

import pytest
from api_support import settings
from fastapi.testclient import TestClient

from edgewise.server import create_app
from edgewise.server.config import REPO_FRONTEND

CIRCUIT = ('{"cfg": {"n_layers": 1, "n_heads": 1}, "edges": {"input->logits": {"score": 1, "in_graph": true}}}')


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(settings(tmp_path))) as c:
        yield c


def n_runs(c) -> int:
    return int(c.get("/api/runs").headers["x-total-count"])


def test_cross_site_writes_are_refused_same_origin_and_headerless_clients_are_not(client):
    evil = {"origin": "http://evil.example"}
    # what a page on another site can send without a preflight: text/plain, multipart, a bare POST
    r = client.post("/api/circuits", content=CIRCUIT, headers={**evil, "content-type": "text/plain"})
    assert r.status_code == 403 and r.json()["detail"]["field"] == "origin" and "evil.example" in r.text
    r = client.post("/api/datasets", headers=evil, files={"file": ("p.json", b"[]")}, data={"model": "tiny"})
    assert r.status_code == 403
    assert client.post("/api/runs/x/cancel", headers={"origin": "null"}).status_code == 403
    assert client.post("/api/runs/x/cancel", headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert client.delete("/api/runs/x", headers={"origin": "http://testserver.evil.example"}).status_code == 403
    assert n_runs(client) == 0
    # the page itself (same origin), and clients that send no Origin (curl, scripts), are served
    assert client.post("/api/circuits", content=CIRCUIT, headers={"origin": "http://testserver",
                                                                  "content-type": "application/json"}).status_code == 201
    assert client.post("/api/circuits", content=CIRCUIT, headers={"content-type": "application/json"}).status_code == 201
    assert client.post("/api/circuits", content=CIRCUIT, headers={"content-type": "text/plain"}).status_code == 415
    assert client.get("/api/runs", headers=evil).status_code == 200  # reads: the browser keeps them from the site
    assert n_runs(client) == 2


def test_foreign_host_is_refused_without_a_token_dns_rebinding(tmp_path):
    with TestClient(create_app(settings(tmp_path, allowed_hosts=()))) as c:
        for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.nip.io"):
            r = c.get("/api/health", headers={"host": host})
            assert r.status_code == 400 and r.json()["detail"]["field"] == "host", host
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
            assert c.get("/api/health", headers={"host": host}).status_code == 200, host
    with TestClient(create_app(settings(tmp_path, allowed_hosts=("lab.example",)))) as c:
        assert c.get("/api/health", headers={"host": "lab.example:8000"}).status_code == 200
    with TestClient(create_app(settings(tmp_path, allowed_hosts=(), token="s3cret"))) as c:  # exposed: the token guards
        r = c.get("/api/health", headers={"host": "edgewise.lab.example", "authorization": "Bearer s3cret"})
        assert r.status_code == 200
        r = c.post("/api/circuits", content=CIRCUIT, headers={"host": "edgewise.lab.example", "authorization":
                                                              "Bearer s3cret", "origin": "http://evil.example",
                                                              "content-type": "application/json"})
        assert r.status_code == 403  # and the Origin check still holds


def test_security_headers_and_a_csp_on_every_answer(client, tmp_path):
    (tmp_path / "frontend").mkdir()
    (tmp_path / "frontend" / "index.html").write_text("<title>edgewise</title>")
    for path in ("/", "/api/health", "/api/runs/nope"):
        h = client.get(path).headers
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert "unsafe-eval" not in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]


def test_docs_are_served_offline_from_swagger_ui_dist(tmp_path):
    if not (REPO_FRONTEND / "node_modules" / "swagger-ui-dist").is_dir():
        pytest.fail("frontend/node_modules/swagger-ui-dist is missing: run `make setup`")
    with TestClient(create_app(settings(tmp_path, frontend_dir=REPO_FRONTEND))) as c:
        docs = c.get("/docs")
        assert docs.status_code == 200
        assert not re.search(r"https?://(?!127\.0\.0\.1)", docs.text.replace("http://testserver", "")), docs.text
        for url in re.findall(r'(?:src|href)="(/vendor/[^"]+)"', docs.text):
            r = c.get(url)
            assert r.status_code == 200 and len(r.content) > 500, url
        assert "/vendor/swagger-ui-bundle.js" in docs.text and "/vendor/swagger-ui.css" in docs.text
        # the one inline script (SwaggerUIBundle's start) is allowed by its hash, nothing else inline
        script = re.search(r"<script>(.*?)</script>", docs.text, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in docs.headers["content-security-policy"]
        assert c.get("/openapi.json").json()["info"]["title"] == "edgewise"

"""The page and /docs in a real browser under the server's Content-Security-Policy: nothing is blocked
(no `securitypolicyviolation`), and nothing is fetched from outside (every other host is cut off, as
offline): /docs renders swagger-ui from /vendor/."""
from __future__ import annotations

import json
import urllib.request

from test_browser import N_PAIRS, TASK, browser, get, server, wait_view  # noqa: F401 (fixtures)

WATCH = """window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_page_and_docs_work_under_the_csp_and_offline(browser, server):  # noqa: F811
    lines = get(f"{server}/api/tasks/{TASK}/pairs?format=jsonl").splitlines()[:N_PAIRS]
    model = next(t for t in get(f"{server}/api/tasks") if t["name"] == TASK)["model"]
    ds = post(f"{server}/api/datasets", {"model": model, "pairs": [json.loads(x) for x in lines]})
    run = post(f"{server}/api/runs", {"model": model, "dataset_id": ds["id"]})

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(server):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    context.route("**/*", only_local)
    context.add_init_script(WATCH)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/?run={run['id']}")
    wait_view(page)
    page.get_by_label("Edge threshold").fill("600")  # the release asks the server for the faithfulness (a POST)
    page.wait_for_function("() => /^-?\\d+\\.\\d{3}$/.test(document.getElementById('faithfulness').textContent)",
                           timeout=60_000)
    assert page.evaluate("window.__csp") == [] and not errors, (page.evaluate("window.__csp"), errors)

    page.goto(f"{server}/docs")
    page.locator(".swagger-ui .opblock").first.wait_for(timeout=30_000)
    n_ops = page.locator(".swagger-ui .opblock").count()
    assert n_ops >= 15, n_ops
    assert page.evaluate("window.__csp") == [] and not errors, (page.evaluate("window.__csp"), errors)
    assert outside == [], outside
    context.close()

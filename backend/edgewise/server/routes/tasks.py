"""GET /api/tasks, the bundled tasks' prompt pairs as downloadable CSV or JSONL, and their known circuits."""
from __future__ import annotations

import csv
import io
import json
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ...data import FIELDS
from ...tasks import load_task
from ..deps import Context, api_error, get_ctx
from ..schemas import Error, TaskInfo

router = APIRouter(tags=["tasks"])


@router.get("/tasks", response_model=list[TaskInfo], summary="bundled tasks")
def list_tasks(ctx: Context = Depends(get_ctx)) -> list[dict]:
    return ctx.catalog.list_tasks()


@router.get("/tasks/{name}/pairs", summary="a task's prompt pairs as a file (an example to upload or edit)",
            responses={200: {"content": {"text/csv": {}, "application/jsonl": {}}}, 404: {"model": Error}})
def task_pairs(name: str, format: Literal["csv", "jsonl"] = Query("jsonl"), ctx: Context = Depends(get_ctx)):
    if name not in {t["name"] for t in ctx.catalog.list_tasks()}:  # never a path: only listed names
        raise api_error(404, f"no task {name!r}; tasks: {', '.join(t['name'] for t in ctx.catalog.list_tasks())}",
                        field="name")
    text = ctx.catalog.task_pairs_path(name).read_text(encoding="utf-8")
    headers = {"Content-Disposition": f'attachment; filename="{name}.{format}"'}
    if format == "jsonl":
        return Response(text, media_type="application/jsonl", headers=headers)
    return Response(records_to_csv([json.loads(line) for line in text.splitlines() if line.strip()]),
                    media_type="text/csv", headers=headers)


class TaskCircuit(BaseModel):
    name: str
    model: str
    edges: list[str] = Field(description="the known circuit's edges, in edgewise (EAP-IG) edge names")
    source: str = Field("", description="where the circuit comes from (weights, a paper, by construction)")


@router.get("/tasks/{name}/circuit", response_model=TaskCircuit, responses={404: {"model": Error}},
            summary="the circuit known for a task (the page's overlay: true edges, precision/recall, ROC)")
def task_circuit(name: str, ctx: Context = Depends(get_ctx)) -> dict:
    listed = {t["name"]: t for t in ctx.catalog.list_tasks()}
    if name not in listed:  # never a path: only listed names
        raise api_error(404, f"no task {name!r}; tasks: {', '.join(listed)}")
    if not listed[name].get("has_circuit"):
        raise api_error(404, f"task {name!r} ships no known circuit")
    try:
        task = load_task(name)
    except ValueError:  # listed by a catalog that is not the bundled zoo
        raise api_error(404, f"task {name!r} ships no known circuit") from None
    return {"name": name, "model": task.model, "edges": task.circuit or [],
            "source": task.spec.get("circuit_source", "")}


def records_to_csv(records: list[dict]) -> str:
    """One column per field; token ids are written as JSON lists (data.py reads "[1, 2]" cells back)."""
    columns = [f for f in FIELDS if any(f in r for r in records)]
    columns += sorted({k for r in records for k in r} - set(columns))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for r in records:
        w.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue()


def _cell(v) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]  # a lone token id: "7" in a CSV cell would be read as text
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return "" if v is None else str(v)

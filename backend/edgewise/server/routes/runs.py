"""Runs: queue an attribution (202 at once), read its status, stream its progress (SSE), cancel it."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from ...metrics import METRICS
from ..deps import Context, api_error, get_ctx, get_run_or_404
from ..schemas import CancelResult, Error, Run, RunCreate
from ..store import FINAL
from .datasets import check_model

router = APIRouter(tags=["runs"])
KEEPALIVE_S = 15.0


@router.post("/runs", status_code=202, response_model=Run, summary="queue an attribution run",
             responses={400: {"model": Error}, 422: {"model": Error}})
def create_run(body: RunCreate, ctx: Context = Depends(get_ctx)) -> dict:
    model = check_model(ctx, body.model)
    ds = ctx.store.get_dataset(body.dataset_id)
    if ds is None:
        raise api_error(422, f"no dataset {body.dataset_id!r}; upload pairs with POST /api/datasets first",
                        field="dataset_id")
    if ds["model"] != model:
        raise api_error(422, f"dataset {ds['id']} was tokenized for model {ds['model']!r}, not {model!r}; "
                        "upload it again for this model", field="dataset_id")
    check_metric(ctx, model, body.metric, ds["has_answers"])
    run = ctx.store.create_run(model=model, dataset_id=ds["id"], method=body.method, metric=body.metric,
                               ablation=body.ablation, batch_size=body.batch_size, ig_steps=body.ig_steps)
    ctx.jobs.submit(run["id"])
    return run


def check_metric(ctx: Context, model: str, metric: str, has_answers: bool) -> None:
    if metric not in METRICS:
        raise api_error(422, f"unknown metric {metric!r}; choose from {', '.join(sorted(METRICS))}", field="metric")
    info = next((m for m in ctx.catalog.list_models() if m["name"] == model), None)
    fits = (info or {}).get("metrics") or []
    if fits and metric not in fits:
        raise api_error(422, f"metric {metric!r} does not fit model {model!r}; choose from {', '.join(fits)}",
                        field="metric")
    if METRICS[metric].needs_answers and not has_answers:
        raise api_error(422, f"metric {metric!r} needs answer and wrong_answer in every pair; this dataset has "
                        "none (use kl, or a task metric)", field="metric")


@router.get("/runs", response_model=list[Run], summary="runs, newest first")
def list_runs(limit: int = Query(100, ge=1, le=1000), ctx: Context = Depends(get_ctx)) -> list[dict]:
    return ctx.store.list_runs(limit)


@router.get("/runs/{run_id}", response_model=Run, responses={404: {"model": Error}})
def get_run(run_id: str, ctx: Context = Depends(get_ctx)) -> dict:
    return get_run_or_404(ctx, run_id)


@router.post("/runs/{run_id}/cancel", response_model=CancelResult, summary="cancel a queued or running run",
             responses={404: {"model": Error}, 409: {"model": Error}})
def cancel_run(run_id: str, ctx: Context = Depends(get_ctx)) -> dict:
    run = get_run_or_404(ctx, run_id)
    if run["status"] in FINAL:
        raise api_error(409, f"run {run_id} is already {run['status']}")
    return {"id": run_id, "status": ctx.jobs.cancel(run_id)}


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def progress_data(run: dict) -> dict:
    return {"id": run["id"], "status": run["status"], "progress": run["progress"], "stage": run["stage"]}


@router.get("/runs/{run_id}/events", summary="server-sent events: progress, then done | failed | cancelled",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": Error}})
async def run_events(run_id: str, request: Request, ctx: Context = Depends(get_ctx)) -> StreamingResponse:
    """`event: progress` with {id, status, progress, stage}; the last event is `done`, `failed` or
    `cancelled` with the run. A client that connects after the end gets that final event at once.
    EventSource cannot send headers: pass the token as ?token= when EDGEWISE_TOKEN is set."""
    get_run_or_404(ctx, run_id)
    queue = ctx.hub.subscribe(run_id)
    run = ctx.store.get_run(run_id)  # read after subscribing, so no event falls between the two

    async def stream():
        try:
            if run["status"] in FINAL:
                yield sse(run["status"], run)
                return
            yield sse("progress", progress_data(run))
            while True:
                try:
                    event, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                yield sse(event, data)
                if event in FINAL:
                    return
        finally:
            ctx.hub.unsubscribe(run_id, queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

"""Runs: queue an attribution (202 at once), list, read, rename, delete, cancel, stream its events (SSE)."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from ...attribution import _check
from ...metrics import METRICS
from ..deps import Context, Page, api_error, get_ctx, get_run_or_404, paging
from ..schemas import CancelResult, Error, Run, RunCreate, RunPatch, RunSummary
from ..store import ACTIVE, FINAL, InUse, QueueFull
from .datasets import check_model

router = APIRouter(tags=["runs"])
KEEPALIVE_S = 15.0
NOT_FOUND = {404: {"model": Error}}


@router.post("/runs", status_code=202, response_model=Run, summary="queue an attribution run",
             responses={400: {"model": Error}, 422: {"model": Error}, 429: {"model": Error}})
def create_run(body: RunCreate, ctx: Context = Depends(get_ctx)) -> dict:
    model = check_model(ctx, body.model)
    if body.dtype not in ctx.settings.dtypes():
        raise api_error(422, f"dtype {body.dtype!r} needs a cuda device; this server computes on "
                        f"{ctx.engine.device} (choose from {', '.join(ctx.settings.dtypes())})", field="dtype")
    ds = ctx.store.get_dataset(body.dataset_id)
    if ds is None:
        raise api_error(422, f"no dataset {body.dataset_id!r}; upload pairs with POST /api/datasets first",
                        field="dataset_id")
    if ds["model"] != model:
        raise api_error(422, f"dataset {ds['id']} was tokenized for model {ds['model']!r}, not {model!r}; "
                        "upload it again for this model", field="dataset_id")
    check_metric(ctx, model, body.metric, ds["has_answers"])
    check_method(ctx, model, body.method, body.ablation)
    try:
        run = ctx.store.create_run(model=model, dataset_id=ds["id"], method=body.method, metric=body.metric,
                                   ablation=body.ablation, batch_size=body.batch_size, ig_steps=body.ig_steps,
                                   dtype=body.dtype, name=body.name, max_queued=ctx.settings.max_queued)
    except QueueFull as e:
        raise api_error(429, f"{e}; try again when a run has finished", field="queue",
                        headers={"Retry-After": "10"}) from None
    except KeyError:
        raise api_error(422, f"dataset {body.dataset_id!r} was deleted", field="dataset_id") from None
    ctx.jobs.submit(run["id"])
    return run


def check_method(ctx: Context, model: str, method: str, ablation: str) -> None:
    """An ill-defined method/ablation pair on this model (attribution.method_warnings) is a 422 now,
    not a failed run later, when the model is loaded already (the upload loaded it; otherwise the
    run job refuses it with the same message)."""
    if not ctx.engine.models.cached(model):
        return
    try:
        _check(method, ablation, ctx.engine.models.get(model))
    except ValueError as e:
        raise api_error(422, str(e), field="method") from None


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


@router.get("/runs", response_model=list[RunSummary],
            summary="runs, newest first, without cfg and meta; the X-Total-Count header holds the total")
def list_runs(response: Response, page: Page = Depends(paging), ctx: Context = Depends(get_ctx)) -> list[dict]:
    return [ctx.jobs.overlay(r) for r in page.answer(response, ctx.store.list_runs(page.limit, page.offset))]


@router.get("/runs/{run_id}", response_model=Run, responses=NOT_FOUND)
def get_run(run_id: str, ctx: Context = Depends(get_ctx)) -> dict:
    return get_run_or_404(ctx, run_id)


@router.patch("/runs/{run_id}", response_model=Run, summary="rename a run (null clears the name)",
              responses={**NOT_FOUND, 422: {"model": Error}})
def rename_run(run_id: str, body: RunPatch, ctx: Context = Depends(get_ctx)) -> dict:
    get_run_or_404(ctx, run_id)
    ctx.store.rename_run(run_id, (body.name.strip() or None) if body.name is not None else None)
    return get_run_or_404(ctx, run_id)


@router.delete("/runs/{run_id}", status_code=204, summary="delete a finished run and its scores",
               responses={**NOT_FOUND, 409: {"model": Error}})
def delete_run(run_id: str, ctx: Context = Depends(get_ctx)) -> Response:
    run = get_run_or_404(ctx, run_id)
    if run["status"] in ACTIVE:
        raise api_error(409, f"run {run_id} is {run['status']}; cancel it first", field="run_id")
    try:
        ctx.store.delete_run(run_id)
    except InUse as e:
        raise api_error(409, f"run {run_id} is {e}; cancel it first", field="run_id") from None
    ctx.views.forget(run_id)
    ctx.engine.forget([run_id])
    ctx.jobs.final.pop(run_id, None)
    return Response(status_code=204)


@router.post("/runs/{run_id}/cancel", response_model=CancelResult, summary="cancel a queued or running run",
             responses={**NOT_FOUND, 409: {"model": Error}})
def cancel_run(run_id: str, ctx: Context = Depends(get_ctx)) -> dict:
    run = get_run_or_404(ctx, run_id)
    if run["status"] in FINAL:
        raise api_error(409, f"run {run_id} is already {run['status']}", field="run_id")
    return {"id": run_id, "status": ctx.jobs.cancel(run_id)}


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def progress_data(run: dict) -> dict:
    return {"id": run["id"], "status": run["status"], "progress": run["progress"], "stage": run["stage"]}


@router.get("/runs/{run_id}/events", response_class=StreamingResponse,
            summary="server-sent events: progress, scored, curve points, mib, then done | failed | cancelled",
            responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": Error}})
async def run_events(run_id: str, request: Request, ctx: Context = Depends(get_ctx)) -> StreamingResponse:
    """A late client first gets `progress`, then `scored` (if scored), every curve point so far and `mib`
    (if computed), then the live events; a finished run sends its final event alone. EventSource cannot send headers: with
    EDGEWISE_TOKEN set, pass ?token= (accepted on this GET only)."""
    get_run_or_404(ctx, run_id)
    queue = ctx.hub.subscribe(run_id)
    run = get_run_or_404(ctx, run_id)  # read after subscribing, so no event falls between the two
    live = run["scored"] and run["status"] not in FINAL
    points = ctx.store.get_curve(run_id) if live else []
    mib = ctx.store.get_mib(run_id) if live else None

    async def stream():
        try:
            if run["status"] in FINAL:
                yield sse(run["status"], run)
                return
            yield sse("progress", progress_data(run))
            scored = run["scored"]
            if scored:
                yield sse("scored", run)
            total = len(ctx.engine.curve_ks(run["n_edges"] or 0))
            for i, p in enumerate(points):
                yield sse("curve", {**p, "index": i, "total": total})
            sent = len(points)
            if mib is not None:
                yield sse("mib", mib)
            while True:
                try:
                    event, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if (event == "scored" and scored) or (event == "curve" and data["index"] < sent) or \
                        (event == "mib" and mib is not None):
                    continue  # already sent from the store
                scored = scored or event == "scored"
                sent += event == "curve"
                yield sse(event, data)
                if event in FINAL:
                    return
        finally:
            ctx.hub.unsubscribe(run_id, queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

"""A scored run's results: ranked edges, faithfulness of a kept edge set, per-pair metrics, the curve,
MIB's CPR/CMD, circuit JSON.

They answer from the moment a run is `scored` (its scores stored), while its curve is still computed.
"""
from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from ..deps import Context, api_error, get_ctx, get_run_or_404
from ..device import DeviceBusy
from ..engine import Unavailable, finite
from ...circuit import prune_connected
from ..schemas import Curve, Edges, Error, FaithfulnessRequest, FaithfulnessResult, Mib, Pairs
from ..views import CHUNK, RunScores, pair_rows

router = APIRouter(tags=["runs"])
NOT_SCORED = {404: {"model": Error}, 409: {"model": Error}}
KEYS = ("metric_clean", "metric_corrupted", "metric_circuit", "normalized")


def scored_view(ctx: Context, run_id: str, own: bool = False) -> tuple[dict, RunScores]:
    run = get_run_or_404(ctx, run_id)
    view = ctx.views.get(run) if run["scored"] else None
    if view is None:
        why = f": {run['error']}" if run.get("error") else ""
        raise api_error(409, f"run {run_id} is {run['status']}{why}; results exist once it is scored", field="run_id")
    if own and view.in_graph is None:
        raise api_error(422, f"own: run {run_id} is not an imported circuit (it has no in_graph edges of its own)",
                        field="own")
    return run, view


def selection(top_k: int | None = Query(None, ge=0, le=2**31), min_abs_score: float | None = Query(None, ge=0),
              own: bool = Query(False, description="an imported circuit's own in_graph edges"),
              connected: bool = Query(False, description="then only edges on an input → logits path (EAP-IG's prune)"),
              ) -> dict:
    if min_abs_score is not None and math.isnan(min_abs_score):
        raise api_error(422, "min_abs_score: must be a number", field="min_abs_score")
    return {"top_k": top_k, "min_abs_score": min_abs_score, "own": own, "connected": connected}


@router.get("/runs/{run_id}/edges", response_model=Edges, responses=NOT_SCORED,
            summary="edges ranked by |score|; top_k, min_abs_score, own and connected select them")
def edges(run_id: str, sel: dict = Depends(selection), ctx: Context = Depends(get_ctx)) -> Response:
    _, view = scored_view(ctx, run_id, sel["own"])
    picked = view.select(**sel)
    head = f'{{"n_edges_total":{len(view.scores)},"edges":['
    if len(picked) <= CHUNK:  # serialized here: edge dicts through the response model cost several times more
        return Response(head + "".join(view.edge_chunks(picked)) + "]}", media_type="application/json")
    return StreamingResponse(_wrap(head, view.edge_chunks(picked), "]}"), media_type="application/json")


def _wrap(head: str, chunks, tail: str):
    yield head
    yield from chunks
    yield tail


@router.post("/runs/{run_id}/faithfulness", response_model=FaithfulnessResult,
             summary="faithfulness of a selection (top_k / min_abs_score / own, connected) or of a given edge set",
             responses={**NOT_SCORED, 422: {"model": Error}, 503: {"model": Error}})
async def faithfulness(run_id: str, body: FaithfulnessRequest, ctx: Context = Depends(get_ctx)) -> dict:
    """The first call on a run computes (and, when they fit, keeps) its clean and ablated activations;
    later calls cost one patched forward pass per batch. While a run's curve computes, a request is
    served between two curve points. While an attribution holds the device: 503 at once, with
    Retry-After. A waiting request holds no server thread."""
    run, view = await run_in_threadpool(scored_view, ctx, run_id, body.own)  # a first read ranks the scores
    mask = await run_in_threadpool(_mask, view, body)
    return await on_device(ctx, lambda: ctx.engine.submit_faithfulness(run, mask))


async def on_device(ctx: Context, submit):
    """Await the Future `submit()` returns: 503 (Retry-After) when the device refuses or stays busy,
    409 when the run cannot be evaluated here."""
    try:
        future = submit()
    except DeviceBusy as e:
        raise api_error(503, str(e), field="device", headers={"Retry-After": str(e.retry_after)}) from None
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), ctx.settings.busy_timeout_s)
    except asyncio.TimeoutError:
        raise api_error(503, f"the device stayed busy for {ctx.settings.busy_timeout_s:g} s; try again",
                        field="device", headers={"Retry-After": "5"}) from None
    except Unavailable as e:
        raise api_error(409, str(e), field="run_id") from None


@router.get("/runs/{run_id}/pairs", response_model=Pairs,
            summary="per pair: the clean, fully ablated and circuit metric of a selection, worst first",
            responses={**NOT_SCORED, 503: {"model": Error}})
async def pairs(run_id: str, sel: dict = Depends(selection),
                limit: int | None = Query(None, ge=1, le=100_000, description="only the `limit` worst pairs"),
                ctx: Context = Depends(get_ctx)) -> dict:
    """One patched pass per batch (CircuitEvaluator.per_pair), cached per (run, selection); served
    between curve points as /faithfulness is. Pair i's circuit metric equals ew.evaluate on pair i alone."""
    run, view = await run_in_threadpool(scored_view, ctx, run_id, sel["own"])
    mask = await run_in_threadpool(lambda: view.keep_mask(view.select(**sel)))
    values = await on_device(ctx, lambda: ctx.engine.submit_per_pair(run, mask))

    def table() -> dict:
        data = ctx.store.load_pairs(run["dataset_id"], with_warnings=False)
        rows = pair_rows(data, ctx.engine.tokenizer(run), values, limit)
        return {"n_edges": int(mask.sum()), "n_pairs": len(data), "metric": run["metric"], "pairs": rows}

    try:
        return await run_in_threadpool(table)
    except KeyError:
        raise api_error(409, f"the dataset of run {run_id} was deleted", field="run_id") from None


@router.get("/runs/{run_id}/mib", response_model=Mib, responses=NOT_SCORED,
            summary="MIB's CPR and CMD of the run's scores (409 until computed, after the curve)")
def mib(run_id: str, ctx: Context = Depends(get_ctx)) -> dict:
    run, _ = scored_view(ctx, run_id)
    scores = ctx.store.get_mib(run_id)
    if scores is None:
        why = ("an imported circuit has no pairs evaluated with it" if run["method"] == "imported" else
               "they are computed after the faithfulness curve" if run["status"] == "running" else
               "they were not computed for this run")
        raise api_error(409, f"run {run_id} has no MIB scores: {why}", field="run_id")
    return scores


def _mask(view: RunScores, body: FaithfulnessRequest):
    if body.edges is not None:
        try:
            mask = view.graph.mask_from_edges(body.edges)
        except ValueError as e:
            raise api_error(422, str(e), field="edges") from None
        return prune_connected(view.graph, mask) if body.connected else mask
    return view.keep_mask(view.select(body.top_k, body.min_abs_score, body.own, body.connected))


@router.get("/runs/{run_id}/curve", response_model=Curve, responses=NOT_SCORED,
            summary="faithfulness vs number of edges: the points computed so far, and whether that is all")
def curve(run_id: str, ctx: Context = Depends(get_ctx)) -> dict:
    run, view = scored_view(ctx, run_id)
    points = sorted(ctx.store.get_curve(run_id), key=lambda p: p["k"])
    return {"id": run_id, "metric": run["metric"], "n_edges_total": len(view.scores),
            "complete": run["curve_complete"], "points": points}


@router.get("/runs/{run_id}/circuit", summary="circuit JSON download (edgewise.circuit/v1, EAP-IG compatible)",
            responses={200: {"content": {"application/json": {}}}, **NOT_SCORED})
def circuit(run_id: str, sel: dict = Depends(selection), ctx: Context = Depends(get_ctx)) -> Response:
    """Exactly the selected edges are `in_graph: true`. No selection: an imported circuit's own
    selection, else every edge. Faithfulness is included when cheap: a curve point at that k, or a
    run whose activations are cached and a free device."""
    run, view = scored_view(ctx, run_id, sel["own"])
    imported = view.in_graph is not None
    own = imported and (sel["own"] or (sel["top_k"] is None and sel["min_abs_score"] is None))
    picked = view.select(sel["top_k"], sel["min_abs_score"], own, sel["connected"])
    # the imported file's own selection, as filed
    as_filed = own and sel["top_k"] is None and sel["min_abs_score"] is None and not sel["connected"]
    meta = run["meta"]
    if as_filed:
        chosen = meta.get("selection") or {}
    else:
        chosen = {k: v for k, v in (("top_k", None if sel["top_k"] is None else min(sel["top_k"], len(view.scores))),
                                    ("min_abs_score", sel["min_abs_score"]), ("own", own or None),
                                    ("connected", sel["connected"] or None)) if v is not None}
    dataset = meta.get("dataset") or {}
    if run.get("dataset_id") and (ds := ctx.store.get_dataset(run["dataset_id"])):
        dataset = {"n_pairs": ds["n_pairs"], "sha256": ds["sha256"]}
    method = meta.get("method") if run["method"] == "imported" else run["method"]
    faith = meta.get("faithfulness") if as_filed else None
    info = {"model": run["model"] or meta.get("model"), "method": method, "metric": run["metric"],
            "ablation": run["ablation"], "dataset": dataset, "selection": chosen,
            "faithfulness": faith or cheap_faithfulness(ctx, run, view, picked, prefix=not own and not sel["connected"])}
    name = f"circuit-{run_id}" + (f"-top{chosen['top_k']}" if sel["top_k"] is not None else "") + \
        ("-connected" if sel["connected"] else "") + ".json"
    return StreamingResponse(view.circuit_chunks(picked, info), media_type="application/json",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


def cheap_faithfulness(ctx: Context, run: dict, view: RunScores, picked, prefix: bool) -> dict | None:
    """A curve point at this k (when the selection is a prefix of the ranking), or a live evaluation
    if the run's activations are cached and the device is free right now; else None."""
    if prefix:
        for p in ctx.store.get_curve(run["id"]):
            if p["k"] == len(picked):
                return finite({key: p[key] for key in KEYS})
    try:
        f = ctx.engine.faithfulness_if_free(run, view.keep_mask(picked))
    except Unavailable:
        return None
    return finite({key: f[key] for key in KEYS}) if f else None


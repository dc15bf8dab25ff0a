"""A finished run's results: ranked edges, faithfulness of a kept edge set, the curve, circuit JSON."""
from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from ..deps import Context, api_error, get_ctx, get_run_or_404
from ..engine import Busy, Unavailable
from ..schemas import Curve, Edges, Error, FaithfulnessRequest, FaithfulnessResult
from ..views import RunScores

router = APIRouter(tags=["runs"])
NOT_DONE = {404: {"model": Error}, 409: {"model": Error}}


def done_scores(ctx: Context, run_id: str) -> tuple[dict, RunScores]:
    run = get_run_or_404(ctx, run_id)
    if run["status"] != "done":
        why = f": {run['error']}" if run.get("error") else ""
        raise api_error(409, f"run {run_id} is {run['status']}{why}; results exist once it is done")
    view = ctx.views.get(run)
    if view is None:
        raise api_error(409, f"run {run_id} is done but has no stored scores")
    return run, view


@router.get("/runs/{run_id}/edges", response_model=Edges, responses=NOT_DONE,
            summary="edges ranked by |score|; top_k and/or min_abs_score select a prefix")
def edges(run_id: str, top_k: int | None = Query(None, ge=0), min_abs_score: float | None = Query(None, ge=0),
          ctx: Context = Depends(get_ctx)) -> Response:
    _, view = done_scores(ctx, run_id)
    picked = view.select(top_k, min_abs_score)
    # serialized here: 32k edge dicts through the response model would cost several times more
    body = f'{{"n_edges_total":{len(view.scores)},"edges":{view.edges_json(picked)}}}'
    return Response(body, media_type="application/json")


@router.post("/runs/{run_id}/faithfulness", response_model=FaithfulnessResult,
             summary="faithfulness of the top-k circuit or of a given edge set",
             responses={**NOT_DONE, 422: {"model": Error}, 503: {"model": Error}})
def faithfulness(run_id: str, body: FaithfulnessRequest, ctx: Context = Depends(get_ctx)) -> dict:
    """The first call on a run computes and caches its clean and ablated activations; later calls
    cost one patched forward pass per batch."""
    run, view = done_scores(ctx, run_id)
    if body.edges is not None:
        try:
            mask = view.graph.mask_from_edges(body.edges)
        except ValueError as e:
            raise api_error(422, str(e), field="edges") from None
    else:
        mask = view.keep_mask(view.select(top_k=body.top_k))
    t0 = time.perf_counter()
    try:
        result = ctx.engine.faithfulness(run, mask)
    except Unavailable as e:
        raise api_error(409, str(e)) from None
    except Busy as e:
        raise api_error(503, str(e), headers={"Retry-After": "5"}) from None
    return {**result, "seconds": time.perf_counter() - t0}


@router.get("/runs/{run_id}/curve", response_model=Curve, responses=NOT_DONE,
            summary="faithfulness vs number of edges, computed with the run")
def curve(run_id: str, ctx: Context = Depends(get_ctx)) -> dict:
    run, view = done_scores(ctx, run_id)
    points = ctx.store.get_curve(run_id) or []
    return {"id": run_id, "metric": run["metric"], "n_edges_total": len(view.scores), "points": points}


@router.get("/runs/{run_id}/circuit", summary="circuit JSON download (edgewise.circuit/v1, EAP-IG compatible)",
            responses={200: {"content": {"application/json": {}}}, **NOT_DONE})
def circuit(run_id: str, top_k: int | None = Query(None, ge=0), min_abs_score: float | None = Query(None, ge=0),
            ctx: Context = Depends(get_ctx)) -> Response:
    """Exactly the selected edges are `in_graph: true`. No selection: an imported circuit's own
    selection, else every edge. Faithfulness is included when cheap: a curve point at that k, or a
    run whose activations are already cached by /faithfulness."""
    run, view = done_scores(ctx, run_id)
    own = top_k is None and min_abs_score is None and view.in_graph is not None
    if own:
        picked = view.order[view.in_graph[view.order]]
        selection = run["meta"].get("selection") or {}
    else:
        picked = view.select(top_k, min_abs_score)
        selection = {k: v for k, v in (("top_k", None if top_k is None else len(picked)),
                                        ("min_abs_score", min_abs_score)) if v is not None}
    mask = view.keep_mask(picked)
    meta = run["meta"]
    dataset = meta.get("dataset") or {}
    if run.get("dataset_id") and (ds := ctx.store.get_dataset(run["dataset_id"])):
        dataset = {"n_pairs": ds["n_pairs"], "sha256": ds["sha256"]}
    c = view.circuit(mask, model=run["model"] or meta.get("model"),
                     method=meta.get("method") if run["method"] == "imported" else run["method"],
                     metric=run["metric"], ablation=run["ablation"], dataset=dataset, selection=selection,
                     faithfulness=cheap_faithfulness(ctx, run, len(picked), mask, own))
    name = f"circuit-{run_id}" + (f"-top{len(picked)}" if top_k is not None else "") + ".json"
    return Response(c.to_json(), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def cheap_faithfulness(ctx: Context, run: dict, k: int, mask, own: bool) -> dict | None:
    keys = ("metric_clean", "metric_corrupted", "metric_circuit", "normalized")
    if own and run["meta"].get("faithfulness"):  # an imported file's own selection, with its own numbers
        return run["meta"]["faithfulness"]
    if not own:  # every other selection is a prefix of the ranking: the curve may hold its k
        for p in ctx.store.get_curve(run["id"]) or []:
            if p["k"] == k:
                return {key: p[key] for key in keys}
    if ctx.engine.cached_evaluator(run["id"]) is not None:
        try:
            f = ctx.engine.faithfulness(run, mask, timeout=1.0)
            return {key: f[key] for key in keys}
        except (Busy, Unavailable):
            return None
    return None

"""POST /api/circuits: import an edgewise or EAP-IG circuit JSON as a read-only run."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from ...activations import ABLATIONS
from ...circuit import Circuit, CircuitError
from ...metrics import METRICS
from ..config import ModelNameError, resolve_model_name
from ..deps import Context, api_error, get_ctx
from ..schemas import Error, Run
from .datasets import check_model, form_file

router = APIRouter(tags=["circuits"])

IMPORT_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "the circuit JSON itself (cfg, nodes, edges)"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}}}}}


@router.post("/circuits", status_code=201, response_model=Run, openapi_extra=IMPORT_DOC,
             summary="import a circuit JSON (edgewise or EAP-IG) as a read-only run",
             responses={400: {"model": Error}, 413: {"model": Error}, 415: {"model": Error}, 422: {"model": Error}})
async def import_circuit(request: Request,
                         model: str | None = Query(None, max_length=500, description="model to evaluate it on"),
                         dataset_id: str | None = Query(None, max_length=100, description="dataset to evaluate it on"),
                         ctx: Context = Depends(get_ctx)) -> dict:
    """/edges and /circuit work on the result. /faithfulness needs a model, a dataset and a metric:
    given here, or found from the file's `model` and `dataset.sha256` (a dataset stored here).
    The graph comes from the file's `cfg`, bounded by the largest real models."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    filename = ""
    if ctype == "multipart/form-data":
        file, _ = await form_file(request, "the circuit JSON")
        raw, filename = await run_in_threadpool(file.file.read), file.filename or ""
    elif ctype in ("application/json", ""):
        raw = await request.body()
    else:
        raise api_error(415, f"content type {ctype!r}: send the circuit as application/json, or as a multipart "
                        "file field `file`", field="content-type")
    if not raw.strip():
        raise api_error(422, "empty body: send a circuit JSON", field="body")
    return await run_in_threadpool(store_circuit, ctx, raw, filename[:500], model, dataset_id)


def store_circuit(ctx: Context, raw: bytes, filename: str, model: str | None, dataset_id: str | None) -> dict:
    try:
        c = Circuit.from_json(raw)
    except CircuitError as e:
        raise api_error(422, f"not a usable circuit file: {e}", field=e.field or "body") from None
    meta = dict(c.meta)
    model_name = link_model(ctx, model, meta.get("model"), c)
    ds_id = link_dataset(ctx, dataset_id, model_name, meta.get("dataset"))
    metric = meta.get("metric") if meta.get("metric") in METRICS else None
    ablation = meta.get("ablation") if meta.get("ablation") in ABLATIONS else "resample"
    meta["source_file"] = filename
    g = c.graph
    return ctx.store.add_imported_run(model=model_name, dataset_id=ds_id, metric=metric, ablation=ablation,
                                      cfg=g.cfg.to_dict(), scores=c.scores.numpy(),
                                      in_graph=c.in_graph[g.edge_mask].numpy(), meta=meta)


def link_model(ctx: Context, given: str | None, in_file: str | None, c: Circuit) -> str | None:
    """An explicit model must exist and fit the circuit's graph; the file's own is used only if both hold."""
    if given:
        name = check_model(ctx, given)
    elif in_file:
        try:
            name = resolve_model_name(in_file, ctx.catalog, ctx.settings.model_dirs)
        except ModelNameError:
            return None
    else:
        return None
    info = next((m for m in ctx.catalog.list_models() if m["name"] == name), None)
    if info and (info.get("n_layers"), info.get("n_heads")) != (c.graph.cfg.n_layers, c.graph.cfg.n_heads):
        if not given:
            return None
        raise api_error(422, f"the circuit has {c.graph.cfg.n_layers} layers and {c.graph.cfg.n_heads} heads; "
                        f"model {name!r} has {info['n_layers']} and {info['n_heads']}", field="model")
    return name


def link_dataset(ctx: Context, given: str | None, model: str | None, in_file: dict | None) -> str | None:
    if given:
        ds = ctx.store.get_dataset(given)
        if ds is None:
            raise api_error(422, f"no dataset {given!r}", field="dataset_id")
        if model and ds["model"] != model:
            raise api_error(422, f"dataset {given} was tokenized for {ds['model']!r}, not {model!r}", field="dataset_id")
        return ds["id"]
    if model and in_file and in_file.get("sha256"):
        ds = ctx.store.find_dataset(model, in_file["sha256"])
        return ds["id"] if ds else None
    return None

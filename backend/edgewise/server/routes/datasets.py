"""Prompt-pair datasets: upload (multipart file or JSON), validated against the model's tokenizer."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ...data import PairsError, PromptPairs, parse_records
from ..config import ModelNameError, resolve_model_name
from ..deps import Context, Page, api_error, get_ctx, paging
from ..schemas import Dataset, DatasetJSON, Error
from ..store import InUse

router = APIRouter(tags=["datasets"])

UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file", "model"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV, JSON or JSONL prompt pairs"},
        "model": {"type": "string", "description": "the model whose tokenizer validates the pairs"}}}},
    "application/json": {"schema": DatasetJSON.model_json_schema()}}}}


@router.post("/datasets", status_code=201, response_model=Dataset, openapi_extra=UPLOAD_DOC,
             summary="upload prompt pairs (multipart `file` + `model`, or JSON {model, pairs})",
             responses={400: {"model": Error}, 413: {"model": Error}, 415: {"model": Error}, 422: {"model": Error}})
async def upload(request: Request, ctx: Context = Depends(get_ctx)) -> dict:
    """A multipart file is spooled to disk as it arrives and parsed as a stream."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        file, form = await form_file(request, "the prompt pairs")
        model = form.get("model")
        if not isinstance(model, str) or not model.strip():
            raise api_error(422, "missing: name the model in a form field `model`", field="model")
        return await run_in_threadpool(ingest, ctx, model, file.file, None, (file.filename or "")[:500])
    if ctype in ("application/json", ""):
        body = _json_body(await request.body())
        return await run_in_threadpool(ingest, ctx, body.model, None, body.pairs, body.filename)
    raise api_error(415, f"content type {ctype!r}: send multipart/form-data with `file` and `model`, or JSON "
                    "{\"model\", \"pairs\"}", field="content-type")


async def form_file(request: Request, what: str):
    """(the UploadFile in field `file`, the form) of a multipart body; 422 naming what is missing."""
    try:
        form = await request.form(max_files=1, max_fields=10)
    except HTTPException:
        raise
    except Exception as e:  # noqa: BLE001 - multipart parsing errors have several types
        raise api_error(422, f"malformed multipart body: {e}", field="body") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise api_error(422, f"missing: {what} go in a multipart file field named `file`", field="file")
    return file, form


def _json_body(raw: bytes) -> DatasetJSON:
    try:
        return DatasetJSON.model_validate_json(raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] in ("json_invalid", "json_type"):
            raise api_error(422, f"request body is not valid JSON: {err['msg']}", field="body") from None
        raise api_error(422, f"{field}: {err['msg']}", field=field) from None


def ingest(ctx: Context, model_name: str, file, records: list | None, filename: str) -> dict:
    """Parse, validate against the model, store (the same pairs twice give the same dataset)."""
    model_name = check_model(ctx, model_name)
    try:
        if records is None:
            records = parse_records(file, filename, max_records=ctx.settings.max_pairs)
        model = load_model(ctx, model_name)
        pairs = PromptPairs.from_records(model, records, max_pairs=ctx.settings.max_pairs)
    except PairsError as e:
        raise api_error(422, str(e), row=e.row, field=e.field or "file") from None
    ds, created = ctx.store.add_dataset(model_name, pairs, filename)
    return dataset_json(ds, existing=not created)


def check_model(ctx: Context, name: str, field: str = "model") -> str:
    try:
        return resolve_model_name(name, ctx.catalog, ctx.settings.model_dirs)
    except ModelNameError as e:
        raise api_error(e.status, str(e), field=field) from None


def load_model(ctx: Context, name: str):
    """The cached model; a model that cannot be loaded here is a 422 (bad name) or 503 (hub unreachable)."""
    try:
        return ctx.engine.models.get(name)
    except ValueError as e:
        raise api_error(422, f"model {name!r} cannot be loaded: {e}", field="model") from None
    except (RuntimeError, OSError) as e:
        raise api_error(503, f"model {name!r} cannot be loaded here: {e}", field="model") from None


def dataset_json(ds: dict, existing: bool = False) -> dict:
    return {**ds, "count": ds["n_pairs"], "existing": existing}


@router.get("/datasets", response_model=list[Dataset],
            summary="stored datasets, newest first, without preview and warnings; X-Total-Count holds the total")
def list_datasets(response: Response, page: Page = Depends(paging), ctx: Context = Depends(get_ctx)) -> list[dict]:
    datasets = page.answer(response, ctx.store.list_datasets(page.limit, page.offset))
    return [dataset_json(d, existing=True) for d in datasets]


@router.get("/datasets/{dataset_id}", response_model=Dataset, responses={404: {"model": Error}})
def get_dataset(dataset_id: str, ctx: Context = Depends(get_ctx)) -> dict:
    ds = ctx.store.get_dataset(dataset_id)
    if ds is None:
        raise api_error(404, f"no dataset {dataset_id!r}", field="dataset_id")
    return dataset_json(ds, existing=True)


@router.delete("/datasets/{dataset_id}", status_code=204, responses={404: {"model": Error}, 409: {"model": Error}},
               summary="delete a dataset; refused while a queued or running run uses it")
def delete_dataset(dataset_id: str, ctx: Context = Depends(get_ctx)) -> Response:
    """Finished runs that used it keep their scores; their /faithfulness then answers 409."""
    try:
        deleted = ctx.store.delete_dataset(dataset_id)
    except InUse as e:
        raise api_error(409, f"dataset {dataset_id} is used by queued or running run(s) {e}; cancel them first",
                        field="dataset_id") from None
    if not deleted:
        raise api_error(404, f"no dataset {dataset_id!r}", field="dataset_id")
    ctx.engine.forget(r["id"] for r in ctx.store.runs_of_dataset(dataset_id))
    return Response(status_code=204)

"""GET /api/models."""
from fastapi import APIRouter, Depends

from ..config import local_models
from ..deps import Context, get_ctx
from ..schemas import ModelInfo

router = APIRouter(tags=["models"])


@router.get("/models", response_model=list[ModelInfo], summary="models that can be loaded here")
def list_models(ctx: Context = Depends(get_ctx)) -> list[dict]:
    return ctx.catalog.list_models() + local_models(ctx.settings.model_dirs)

"""GET /api/models."""
from fastapi import APIRouter, Depends

from ... import models
from ..deps import Context, get_ctx
from ..schemas import ModelInfo

router = APIRouter(tags=["models"])


@router.get("/models", response_model=list[ModelInfo], summary="models that can be loaded here")
def list_models(ctx: Context = Depends(get_ctx)) -> list[dict]:
    """The catalog's models (zoo, local HF cache, hub), then the checkpoints under EDGEWISE_MODEL_DIRS;
    dtypes are those this server's device offers."""
    dtypes = models.offered_dtypes(ctx.settings.resolved_device())
    found = ctx.catalog.list_models() + models.local_models(ctx.settings.model_dirs)
    return [{**m, "dtypes": dtypes} for m in found]

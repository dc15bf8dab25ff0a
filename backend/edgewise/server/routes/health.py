"""GET /api/health."""
from fastapi import APIRouter, Depends

from ... import __version__
from ..deps import Context, get_ctx
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="status, version, device")
def health(ctx: Context = Depends(get_ctx)) -> Health:
    return Health(version=__version__, device=ctx.engine.device, auth=bool(ctx.settings.token))

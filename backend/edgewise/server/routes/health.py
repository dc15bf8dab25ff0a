"""GET /api/health: answers at once whatever runs (it touches neither the device nor a worker)."""
from fastapi import APIRouter, Depends

from ... import __version__
from ..deps import Context, get_ctx
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="status, version, device, dtypes")
async def health(ctx: Context = Depends(get_ctx)) -> Health:
    ctx.jobs.start()  # replaces a dead worker, should one ever die
    return Health(version=__version__, device=ctx.engine.device, auth=bool(ctx.settings.token),
                  dtypes=ctx.settings.dtypes(), ray=ctx.engine.cluster.info() if ctx.engine.cluster else None,
                  queued=ctx.jobs.n_queued(), running=len(ctx.jobs.running))

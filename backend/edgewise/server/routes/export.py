"""A scored run in other tools' formats: MIB's circuit-track importance file (.json or .pt)."""
from __future__ import annotations

from typing import Literal

import torch
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse

from ...mib_export import mib_bytes, mib_json_chunks
from ..deps import Context, api_error, get_ctx
from .results import NOT_SCORED, scored_view

router = APIRouter(tags=["runs"])


@router.get("/runs/{run_id}/export/mib", responses={200: {"content": {"application/json": {}, "application/octet-stream": {}}},
                                                    **NOT_SCORED},
            summary="every edge's score as MIB's importance file: EAP-IG's Graph.to_json (format=json) or "
                    "Graph.to_pt (format=pt) layout, score = −edgewise's (MIB attributes the loss)")
def export_mib(run_id: str, fmt: Literal["json", "pt"] = Query("json", alias="format"),
               ctx: Context = Depends(get_ctx)) -> Response:
    """Nothing is marked in_graph: MIB thresholds the scores itself. Put the file in a folder
    `<task>_<model>/` of the submission."""
    _, view = scored_view(ctx, run_id)
    scores = torch.tensor(view.scores)  # a copy: the view is shared and read-only
    headers = {"Content-Disposition": f'attachment; filename="importances-{run_id}.{fmt}"'}
    try:
        if fmt == "pt":
            return Response(mib_bytes(view.graph, scores, fmt="pt"), media_type="application/octet-stream",
                            headers=headers)
        return StreamingResponse(mib_json_chunks(view.graph, scores), media_type="application/json", headers=headers)
    except ValueError as e:  # a non-finite score: MIB cannot take the run
        raise api_error(409, f"run {run_id}: {e}", field="run_id") from None

"""Request and response bodies of the HTTP API (pydantic v2); /docs is generated from these."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..activations import ABLATIONS
from ..attribution import METHODS

Method = Literal[METHODS]  # type: ignore[valid-type]
Ablation = Literal[ABLATIONS]  # type: ignore[valid-type]
Status = Literal["queued", "running", "done", "failed", "cancelled"]


class ErrorDetail(BaseModel):
    message: str = Field(description="what is wrong, and where")
    field: str | None = Field(None, description="the request field (or pairs-file field) at fault")
    row: int | None = Field(None, description="1-based row of the prompt-pair file at fault")


class Error(BaseModel):
    """Every 4xx/5xx answer has this body."""

    detail: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    device: str
    auth: bool = Field(description="whether /api calls need a bearer token")


class ModelInfo(BaseModel):
    name: str
    description: str = ""
    n_layers: int | None = None
    n_heads: int | None = None
    d_model: int | None = None
    n_edges: int | None = Field(None, description="null when it cannot be known without loading")
    source: str = Field("zoo", description="zoo (bundled), local (a checkpoint directory under EDGEWISE_MODEL_DIRS), "
                                           "cache (in the local Hugging Face cache) or hub (needs a download)")
    size_bytes: int | None = Field(None, description="bytes of weights on disk (null when unknown)")
    download_needed: bool = False
    dtypes: list[str] = Field(default_factory=lambda: ["float32"], description="dtypes this server offers for it")
    metrics: list[str] = Field(default_factory=list, description="metrics that fit this model")


class TaskInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    model: str
    metric: str
    n_pairs: int
    has_circuit: bool
    description: str = ""


class DatasetJSON(BaseModel):
    """Prompt pairs as JSON (the multipart alternative: a `file` plus a `model` form field)."""

    model: str
    pairs: list[Any] = Field(description='records {"clean", "corrupted", "answer", "wrong_answer"}')
    filename: str = ""


class Dataset(BaseModel):
    id: str
    model: str
    count: int = Field(description="number of prompt pairs")
    sha256: str = Field(description="hash of the tokenized pairs (the circuit JSON's dataset.sha256)")
    filename: str | None = None
    has_answers: bool
    preview: list[dict] = Field(description="the first records, as parsed")
    warnings: list[str]
    existing: bool = Field(False, description="true when the same pairs were uploaded before (same id)")
    created_at: float


class RunCreate(BaseModel):
    model: str
    dataset_id: str
    method: Method = "eap"
    metric: str = "logit_diff"
    ablation: Ablation = "resample"
    batch_size: int = Field(16, ge=1, le=4096)
    ig_steps: int = Field(5, ge=1, le=200, description="integration steps of the eap-ig methods")


class Run(BaseModel):
    id: str
    model: str | None
    dataset_id: str | None
    method: str
    metric: str | None
    ablation: str | None
    batch_size: int | None
    ig_steps: int | None
    status: Status
    progress: float = Field(description="0 to 1")
    stage: str | None = Field(None, description="what a running job is doing")
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    n_edges: int | None = Field(None, description="scored edges, once done")
    cfg: dict | None = Field(None, description="graph config: n_layers, n_heads, d_model, parallel_attn_mlp, attn_only")
    meta: dict = Field(default_factory=dict, description="imported circuits: source selection, faithfulness, dataset")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


class Edge(BaseModel):
    name: str = Field(examples=["a0.h1->a2.h3<q>"])
    src: str
    dst: str
    qkv: Literal["q", "k", "v"] | None
    score: float


class Edges(BaseModel):
    n_edges_total: int
    edges: list[Edge] = Field(description="sorted by |score|, largest first")


class FaithfulnessRequest(BaseModel):
    top_k: int | None = Field(None, ge=0)
    edges: list[str] | None = None

    @model_validator(mode="after")
    def one_of(self):
        if (self.top_k is None) == (self.edges is None):
            raise ValueError("give exactly one of top_k or edges")
        return self


class FaithfulnessResult(BaseModel):
    metric_clean: float
    metric_corrupted: float
    metric_circuit: float
    normalized: float | None = Field(description="(circuit − corrupted) / (clean − corrupted); null if clean = corrupted")
    n_edges: int
    seconds: float = Field(description="time spent computing")


class CurvePoint(BaseModel):
    k: int
    n_edges: int
    metric_clean: float
    metric_corrupted: float
    metric_circuit: float
    normalized: float | None


class Curve(BaseModel):
    id: str
    metric: str | None
    n_edges_total: int | None
    points: list[CurvePoint] = Field(description="faithfulness of the top-k circuit for log-spaced k")


class CancelResult(BaseModel):
    id: str
    status: str = Field(description="cancelled (was queued), running (will stop at its next step), or final")

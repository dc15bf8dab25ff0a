"""Request and response bodies of the HTTP API (pydantic v2); /docs is generated from these."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..activations import ABLATIONS
from ..attribution import METHODS

Method = Literal[METHODS]  # type: ignore[valid-type]
Ablation = Literal[ABLATIONS]  # type: ignore[valid-type]
Status = Literal["queued", "running", "done", "failed", "cancelled"]
DType = Literal["float32", "bfloat16", "float16"]


class Strict(BaseModel):
    """A request body: exact types (`true` is not 1, "no" is not a bool) and no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


def no_control_chars(value: str | None) -> str | None:
    if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not hold control characters (e.g. NUL or a line break)")
    return value


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
    dtypes: list[str] = Field(description="weight dtypes a run may ask for here (half precisions on cuda only)")
    ray: dict | None = Field(None, description="the Ray cluster, when runs are sharded over one")
    queued: int = Field(0, description="runs waiting in the queue")
    running: int = Field(0, description="runs computing now")


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


class DatasetJSON(Strict):
    """Prompt pairs as JSON (the multipart alternative: a `file` plus a `model` form field)."""

    model: str = Field(max_length=500)
    pairs: list[Any] = Field(description='records {"clean", "corrupted", "answer", "wrong_answer"}')
    filename: str = Field("", max_length=500)

    _plain = field_validator("model", "filename")(no_control_chars)


class Dataset(BaseModel):
    id: str
    model: str
    count: int = Field(description="number of prompt pairs")
    sha256: str = Field(description="hash of the tokenized pairs (the circuit JSON's dataset.sha256)")
    filename: str | None = None
    has_answers: bool
    preview: list[dict] | None = Field(None, description="the first records, as parsed (not in listings)")
    warnings: list[str] | None = Field(None, description="per row and field (not in listings)")
    existing: bool = Field(False, description="true when the same pairs were uploaded before (same id)")
    created_at: float


class RunCreate(Strict):
    model: str = Field(max_length=500)
    dataset_id: str = Field(max_length=100)
    method: Method = "eap"
    metric: str = Field("logit_diff", max_length=100)
    ablation: Ablation = "resample"
    batch_size: int = Field(16, ge=1, le=4096)
    ig_steps: int = Field(5, ge=1, le=200, description="integration steps of the eap-ig methods")
    dtype: DType = Field("float32", description="weight dtype; bfloat16 and float16 only on a cuda device")
    name: str | None = Field(None, max_length=200, description="a label for the run")

    _plain = field_validator("model", "dataset_id", "metric", "name")(no_control_chars)


class RunPatch(Strict):
    name: str | None = Field(max_length=200, description="a label for the run; null clears it")

    _plain = field_validator("name")(no_control_chars)


class RunSummary(BaseModel):
    """A run as listed: everything but the bulky cfg and meta."""

    id: str
    name: str | None = None
    model: str | None
    dataset_id: str | None
    n_pairs: int | None = None
    dataset_name: str | None = None
    method: str
    metric: str | None
    ablation: str | None
    batch_size: int | None
    ig_steps: int | None
    dtype: str | None = "float32"
    status: Status
    progress: float = Field(description="0 to 1")
    stage: str | None = Field(None, description="what a running job is doing")
    scored: bool = Field(False, description="scores stored: /edges, /circuit and /faithfulness answer")
    curve_complete: bool = Field(False, description="every faithfulness-curve point is stored")
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    n_edges: int | None = Field(None, description="scored edges, once scored")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


class Run(RunSummary):
    cfg: dict | None = Field(None, description="graph config: n_layers, n_heads, d_model, parallel_attn_mlp, attn_only")
    meta: dict = Field(default_factory=dict, description="imported circuits: source selection, faithfulness, dataset")


class Edge(BaseModel):
    name: str = Field(examples=["a0.h1->a2.h3<q>"])
    src: str
    dst: str
    qkv: Literal["q", "k", "v"] | None
    score: float


class Edges(BaseModel):
    n_edges_total: int
    edges: list[Edge] = Field(description="sorted by |score|, largest first")


class FaithfulnessRequest(Strict):
    top_k: int | None = Field(None, ge=0)
    min_abs_score: float | None = Field(None, ge=0, allow_inf_nan=False)
    own: bool = Field(False, description="an imported circuit's own in_graph edges")
    connected: bool = Field(False, description="then only edges on an input → logits path (EAP-IG's prune)")
    edges: list[str] | None = Field(None, max_length=2_000_000)

    @model_validator(mode="after")
    def one_of(self):
        chose = self.top_k is not None or self.min_abs_score is not None or self.own
        if chose == (self.edges is not None):
            raise ValueError("give edges, or a selection (top_k, min_abs_score, own), not both and not neither")
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
    fraction: float | None = None
    n_edges: int
    metric_clean: float | None
    metric_corrupted: float | None
    metric_circuit: float | None
    normalized: float | None


class Curve(BaseModel):
    id: str
    metric: str | None
    n_edges_total: int | None
    complete: bool = Field(description="false while the run still computes points (or was cancelled mid-curve)")
    points: list[CurvePoint] = Field(description="faithfulness of the top-k circuit, sorted by k, those computed so far")


class MibPoint(BaseModel):
    fraction: float = Field(description="share p of the graph's edges")
    k: int = Field(description="int(p · n_edges): edges kept before the connected prune")
    n_edges: int = Field(description="edges kept after the prune")
    faithfulness: float | None


class Mib(BaseModel):
    """MIB's circuit-localization scores of a run (ew.mib_scores on its pairs and scores)."""

    cpr: float | None = Field(description="area under faithfulness vs fraction, edges by signed score (higher is better)")
    cmd: float | None = Field(description="area under |1 − faithfulness|, edges by |score| (lower is better)")
    points: list[MibPoint] = Field(description="CPR's points: most negative score first, pruned to connected edges")
    points_abs: list[MibPoint] = Field(description="CMD's points: largest |score| first, pruned to connected edges")
    metric_clean: float | None = None
    metric_empty: float | None = Field(None, description="the metric with every edge ablated")


class PairRow(BaseModel):
    index: int = Field(description="0-based position of the pair in its dataset")
    clean: str | list[int] = Field(description="decoded text (token ids where the model has no tokenizer)")
    corrupted: str | list[int]
    answer: str | int | None = None
    wrong_answer: str | int | None = None
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    metric_clean: float | None
    metric_corrupted: float | None
    metric_circuit: float | None
    normalized: float | None = Field(description="(circuit − corrupted) / (clean − corrupted) of this pair; null if equal")


class Pairs(BaseModel):
    n_edges: int = Field(description="edges in the selected circuit")
    n_pairs: int = Field(description="pairs in the dataset (`pairs` holds the `limit` worst)")
    metric: str | None
    pairs: list[PairRow] = Field(description="worst first: by normalized, ascending; null last")


class CancelResult(BaseModel):
    id: str
    status: str = Field(description="cancelled (was queued), running (will stop at its next step), or final")

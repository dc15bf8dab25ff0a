"""Bundled tasks: a zoo model, its prompt pairs, the metric that fits, and the circuit known for it.

    task = load_task("tracr-reverse")      # .model (name), .pairs, .metric, .circuit, .hooked_model

Each zoo folder with a `task.json` is a task of the same name: `pairs.jsonl` holds its records,
`task.json` its metric, description and known circuits (`circuit`, plus for tracr `circuit_acdc` and
`circuit_official`), and what the circuit claim rests on (`circuit_source`; for trained models the
measured faithfulness, roles or alignment, which tests/test_zoo_*.py check; all in `Task.spec`).
The tracr tasks' metrics live in zoo/metrics.py (registered on import).
Known circuits of tracr models follow from the weights (`weight_circuit`): tracr gives every
variable its own residual directions, so u→v is real exactly when what u writes overlaps what v reads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from .graph import Graph
from .zoo import ZOO_DIR, metrics as _zoo_metrics  # noqa: F401  (registers the tracr task metrics)

TRUTHS = ("circuit", "circuit_acdc", "circuit_official")


# ---------------------------------------------------------------- tasks
@dataclass
class Task:
    name: str
    model: str  # the zoo model's name (load it with load_model, or use .hooked_model)
    metric: str
    description: str
    circuit: list[str] | None
    circuits: dict[str, list[str]] = field(default_factory=dict)  # every known truth, by task.json key
    pairs_path: Path | None = None
    spec: dict = field(default_factory=dict, repr=False)  # the whole task.json (sources, measured accuracy)
    _hooked_model: object = field(default=None, repr=False)

    @property
    def hooked_model(self):
        """The task's HookedTransformer, loaded on first use."""
        if self._hooked_model is None:
            from .models import load_model
            self._hooked_model = load_model(self.model)
        return self._hooked_model

    @cached_property
    def pairs(self):
        from .data import PromptPairs
        return PromptPairs.from_file(self.hooked_model, self.pairs_path)


def _task_dir(name: str) -> Path:
    path = ZOO_DIR / name
    if not (path / "task.json").is_file():
        raise ValueError(f"unknown task {name!r}; bundled tasks: {', '.join(t['name'] for t in list_tasks())}")
    return path


def load_task(name: str, model=None) -> Task:
    """The bundled task `name`; `model` (a loaded HookedTransformer) skips loading the zoo model."""
    path = _task_dir(name)
    spec = json.loads((path / "task.json").read_text())
    circuits = {k: spec[k] for k in TRUTHS if spec.get(k) is not None}
    return Task(name=name, model=spec.get("model", name), metric=spec["metric"],
                description=spec.get("description", ""), circuit=spec.get("circuit"), circuits=circuits,
                pairs_path=path / "pairs.jsonl", spec=spec, _hooked_model=model)


def list_tasks() -> list[dict]:
    """name, model, metric, n_pairs, has_circuit of every bundled task (no model is loaded)."""
    out = []
    for path in sorted(ZOO_DIR.glob("*/task.json")):
        spec = json.loads(path.read_text())
        pairs = path.parent / "pairs.jsonl"
        n_pairs = sum(1 for line in pairs.read_text().splitlines() if line.strip()) if pairs.exists() else 0
        out.append({"name": path.parent.name, "model": spec.get("model", path.parent.name),
                    "metric": spec["metric"], "n_pairs": n_pairs, "has_circuit": spec.get("circuit") is not None,
                    "description": spec.get("description", "")})
    return out


# ---------------------------------------------------------------- known circuits from weights
def _nonzero(x: torch.Tensor, dim: int, atol: float) -> torch.Tensor:
    """Which residual directions a weight uses: any |entry| above atol along the other dimension."""
    return (x.detach().double().abs() > atol).any(dim=dim)


def weight_circuit(model, atol: float = 1e-6) -> list[str]:
    """Edges u→v where the residual directions u writes meet those v reads, kept only when they lie
    on a path input → … → logits. Exact for tracr models (disjoint subspaces); on a trained model
    it returns (nearly) every edge."""
    cfg, g = model.cfg, Graph.from_model(model)
    d = cfg.d_model
    writes = torch.zeros(g.n_sources, d, dtype=torch.bool)
    reads = torch.zeros(g.n_inputs, d, dtype=torch.bool)
    writes[0] = _nonzero(model.W_E, 0, atol) | _nonzero(model.W_pos, 0, atol)
    for L in range(cfg.n_layers):
        attn = model.blocks[L].attn
        for h in range(cfg.n_heads):
            ov = attn.W_V[h] @ attn.W_O[h]                           # [d_model(read), d_model(write)]
            qk = attn.W_Q[h] @ attn.W_K[h].T                         # [d_model(query), d_model(key)]
            src = g.head_sources(L).start + h
            writes[src] = _nonzero(ov, 0, atol) | _nonzero((attn.b_V[h] @ attn.W_O[h])[None], 0, atol)
            reads[g.qkv_inputs(L, "q").start + h] = _nonzero(qk, 1, atol)
            reads[g.qkv_inputs(L, "k").start + h] = _nonzero(qk, 0, atol)
            reads[g.qkv_inputs(L, "v").start + h] = _nonzero(ov, 1, atol)
        if not cfg.attn_only:
            mlp = model.blocks[L].mlp
            live = _nonzero(mlp.W_out, 1, atol)                  # hidden units that write anything
            writes[g.mlp_source(L)] = _nonzero(mlp.W_out[live], 0, atol) | _nonzero(mlp.b_out[None], 0, atol)
            reads[g.mlp_input(L)] = _nonzero(mlp.W_in[:, live], 1, atol)
    reads[g.logits_input] = _nonzero(model.W_U, 1, atol)
    real = (writes.float() @ reads.float().T > 0) & g.edge_mask     # [n_sources, n_inputs]

    # keep edges on a path from input to logits: forward reachability, then backward
    node_of_input = [n.split("<")[0] for n in g.input_names]
    reached = {"input"}
    for i, node in enumerate(node_of_input):  # input slots are in forward order
        if any(real[g.source_index[s], i] for s in reached):
            reached.add(node)
    useful = {"logits"}
    for s in reversed(range(g.n_sources)):
        if any(real[s, i] and node_of_input[i] in useful for i in range(g.n_inputs)):
            useful.add(g.source_names[s])
    keep = torch.zeros_like(real)
    for s, i in real.nonzero().tolist():
        keep[s, i] = g.source_names[s] in reached and node_of_input[i] in useful
    return g.edges_from_mask(keep)

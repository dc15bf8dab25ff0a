"""edgewise: find circuits in transformer language models with Edge Attribution Patching.

    import edgewise as ew
    model = ew.load_model("toy-ioi")
    pairs = ew.PromptPairs.from_file(model, "pairs.csv")
    res = ew.attribute(model, pairs, method="eap", metric="logit_diff")
    circuit = res.circuit(top_k=200)
    ew.evaluate(model, pairs, circuit, metric="logit_diff")
    ew.write_mib("ioi_gpt2/importances.pt", res.graph, res.scores)   # MIB's submission format
"""
from .acdc import acdc, acdc_sweep
from .attribution import METHODS, AttributionResult, attribute, score_sums
from .circuit import Circuit, prune_connected
from .data import PairsError, PromptPairs
from .evaluate import MIB_FRACTIONS, CircuitEvaluator, Faithfulness, curve_ks, evaluate, faithfulness_curve, roc_auc
from .graph import Graph, GraphConfig
from .metrics import METRICS, register_metric
from .mib import mib_scores
from .mib_export import mib_bytes, mib_tensors, write_mib

__version__ = "0.1.0"

__all__ = ["acdc", "acdc_sweep", "METHODS", "METRICS", "MIB_FRACTIONS", "AttributionResult", "Circuit",
           "CircuitEvaluator", "Faithfulness", "Graph", "GraphConfig", "PairsError", "PromptPairs", "attribute",
           "curve_ks", "evaluate", "faithfulness_curve", "load_model", "load_task", "mib_bytes", "mib_scores",
           "mib_tensors", "prune_connected", "register_metric", "roc_auc", "score_sums", "write_mib"]


def __getattr__(name):
    # models/tasks pull in the zoo and (for hub models) transformers: load them on first use
    if name == "load_model":
        from .models import load_model
        return load_model
    if name == "load_task":
        from .tasks import load_task
        return load_task
    raise AttributeError(f"module 'edgewise' has no attribute {name!r}")

"""Circuit.from_json, the one validation layer for circuits from outside: strict types, finite scores,
bounds from the largest real models, `attn_only` absent ⇒ MLPs present (as EAP-IG), and every refusal
naming its field. Issue 11 item 4 lists the inputs that used to crash the server."""
import json

import pytest
import torch

import edgewise as ew
from edgewise.circuit import LIMITS, CircuitError, n_edges_of


def eap_ig_file(n_layers=2, n_heads=2, keep=(0, 3, 7)) -> dict:
    """As EAP-IG's Graph.to_json writes it: cfg without attn_only, every node and edge."""
    g = ew.Graph(ew.GraphConfig(n_layers, n_heads))
    return {"cfg": {"n_layers": n_layers, "n_heads": n_heads, "d_model": 16, "parallel_attn_mlp": False},
            "nodes": {n: {"in_graph": True} for n in g.node_names},
            "edges": {n: {"score": (-1) ** i / (i + 1), "in_graph": i in keep} for i, n in enumerate(g.edge_names)}}


def test_eap_ig_file_keeps_its_in_graph_edges_and_its_mlps():
    d = eap_ig_file()
    c = ew.Circuit.from_json(json.dumps(d))
    assert not c.graph.cfg.attn_only and c.graph.n_edges == len(d["edges"])
    assert c.edges == [n for n, e in d["edges"].items() if e["in_graph"]]
    assert c.scores.tolist() == [e["score"] for e in d["edges"].values()]  # graph order kept
    # only the kept edges listed, no MLP among them: still a graph with MLPs (EAP-IG has no attn_only key)
    sparse = {"cfg": d["cfg"], "edges": {"input->a0.h0<q>": {"score": 1.0, "in_graph": True}}}
    c = ew.Circuit.from_json(sparse)
    assert not c.graph.cfg.attn_only and "m0" in c.graph.source_names and c.n_edges == 1
    assert c.scores.abs().sum() == 1.0
    back = ew.Circuit.from_json(c.to_json())
    assert back.edges == c.edges and torch.equal(back.scores, c.scores)


def test_attn_only_when_the_file_says_so():
    d = {"cfg": {"n_layers": 1, "n_heads": 2, "attn_only": True}, "edges": {"a0.h1->logits": {"score": 2}}}
    c = ew.Circuit.from_json(d)
    assert c.graph.cfg.attn_only and c.graph.n_edges == ew.Graph(ew.GraphConfig(1, 2, attn_only=True)).n_edges
    with pytest.raises(CircuitError, match="m0"):
        ew.Circuit.from_json({**d, "edges": {"m0->logits": {}}})


@pytest.mark.parametrize("L, H, attn_only, parallel", [(1, 1, False, False), (3, 2, True, False), (4, 3, False, True),
                                                       (12, 12, False, False)])
def test_edge_count_formula_equals_the_graph(L, H, attn_only, parallel):
    assert n_edges_of(L, H, attn_only, parallel) == ew.Graph(ew.GraphConfig(L, H, 0, parallel, attn_only)).n_edges


def test_bounds_admit_llama_3_8b_and_refuse_larger_graphs():
    assert n_edges_of(32, 32, False, False) == 1_592_881 <= LIMITS["n_edges"]  # Llama-3.1-8B, as MIB counts it
    ok = ew.Circuit.from_json({"cfg": {"n_layers": 32, "n_heads": 32}, "edges": {}})
    assert ok.graph.n_edges == 1_592_881
    for cfg, field in (({"n_layers": 48, "n_heads": 64}, "cfg"), ({"n_layers": 129, "n_heads": 1}, "cfg.n_layers"),
                       ({"n_layers": 1, "n_heads": 129}, "cfg.n_heads"), ({"n_layers": 80, "n_heads": 64}, "cfg")):
        with pytest.raises(CircuitError) as e:
            ew.Circuit.from_json({"cfg": cfg, "edges": {}})
        assert e.value.field == field


RAW = '{"cfg": {"n_layers": 1, "n_heads": 1}, "edges": {"input->logits": {"score": 0.5, "in_graph": true}}}'


@pytest.mark.parametrize("text, field", [
    # issue 11 item 4, one by one
    ('{"cfg": 5, "edges": {}}', "cfg"), ('{"cfg": null, "edges": {}}', "cfg"), ('{"cfg": [], "edges": {}}', "cfg"),
    ('{"cfg": {"n_layers": -1, "n_heads": 1}, "edges": {}}', "cfg.n_layers"),
    ('{"cfg": {"n_layers": 1e400, "n_heads": 1}, "edges": {}}', "cfg.n_layers"),
    ('{"cfg": {"n_layers": 1, "n_heads": 1}, "edges": []}', "edges"),
    (RAW[:-1] + ', "model": 5}', "model"), (RAW[:-1] + ', "model": ["gpt2"]}', "model"),
    (RAW[:-1] + ', "metric": []}', "metric"), (RAW[:-1] + ', "metric": {}}', "metric"),
    (RAW[:-1] + ', "dataset": {"sha256": []}}', "dataset.sha256"),
    (RAW.replace("0.5", "Infinity"), None), (RAW.replace("0.5", "NaN"), None), (RAW.replace("0.5", "1e400"), "edges"),
    ("[" * 100_000 + "]" * 100_000, None), (RAW[:-1] + ', "model": "gp\\u0000t2"}', "model"),
    # strict types
    ('{"cfg": {"n_layers": true, "n_heads": 1}, "edges": {}}', "cfg.n_layers"),
    ('{"cfg": {"n_layers": 1.0, "n_heads": 1}, "edges": {}}', "cfg.n_layers"),
    ('{"cfg": {"n_layers": "1", "n_heads": 1}, "edges": {}}', "cfg.n_layers"),
    ('{"cfg": {"n_layers": 1, "n_heads": 1, "attn_only": "no"}, "edges": {}}', "cfg.attn_only"),
    (RAW.replace("true", '"no"'), "edges"), (RAW.replace("true", "1"), "edges"), (RAW.replace("0.5", "true"), "edges"),
    (RAW.replace("0.5", '"0.5"'), "edges"), (RAW.replace("input->logits", "input->a3.h0<q>"), "edges"),
    (RAW[:-1] + ', "nodes": {"zz": {}}}', "nodes"), (RAW[:-1] + ', "nodes": {"input": {"in_graph": "yes"}}}', "nodes"),
    (RAW[:-1] + ', "selection": {"top_k": -1}}', "selection.top_k"),
    (RAW[:-1] + ', "faithfulness": {"normalized": "high"}}', "faithfulness.normalized"),
    ('{"edges": {}}', "cfg"), ('{"cfg": {"n_layers": 1, "n_heads": 1}}', "edges"), ("[1, 2]", None),
    ("{nope", None), (b"\xff\xfe{}", None), ('{"cfg": {"n_layers": ' + "9" * 5000 + ', "n_heads": 1}, "edges": {}}', None),
])
def test_bad_circuit_files_raise_circuit_error_naming_the_field(text, field):
    with pytest.raises(CircuitError) as e:
        ew.Circuit.from_json(text)
    assert e.value.field == field, str(e.value)
    assert isinstance(e.value, ValueError)  # callers that catch ValueError keep working


def test_meta_is_kept_when_well_typed():
    d = json.loads(RAW)
    d.update(model="gpt2", method="eap", metric="logit_diff", ablation="zero", dataset={"n_pairs": 4, "sha256": "ab"},
             selection={"top_k": 1}, faithfulness={"metric_clean": 1.0, "metric_corrupted": 0, "metric_circuit": 0.5,
                                                   "normalized": None})
    c = ew.Circuit.from_json(json.dumps(d))
    assert c.meta["model"] == "gpt2" and c.meta["ablation"] == "zero" and c.meta["dataset"]["n_pairs"] == 4
    assert c.meta["faithfulness"]["normalized"] is None and c.meta["selection"] == {"top_k": 1}

"""The edge graph: counts, names, index maps and hook names."""
import pytest
from conftest import tiny_model

from edgewise.graph import Graph, GraphConfig


def enumerate_edges(n_layers, n_heads, attn_only=False, parallel=False):
    """Edges by the definition, written out independently: u→v when u writes before v reads."""
    # (name, layer, stage): stage 0 = attention, 1 = MLP; input writes at layer -1
    sources = [("input", -1, 1)]
    for layer in range(n_layers):
        sources += [(f"a{layer}.h{h}", layer, 0) for h in range(n_heads)]
        if not attn_only:
            sources.append((f"m{layer}", layer, 1))
    edges = set()
    for name, layer, stage in sources:
        for dl in range(n_layers):
            for h in range(n_heads):
                if layer < dl:
                    edges |= {f"{name}->a{dl}.h{h}<{x}>" for x in "qkv"}
            mlp_sees = layer < dl or (layer == dl and stage == 0 and not parallel)
            if not attn_only and mlp_sees:
                edges.add(f"{name}->m{dl}")
        edges.add(f"{name}->logits")
    return edges


def test_gpt2_small_has_32491_edges():
    g = Graph(GraphConfig(n_layers=12, n_heads=12, d_model=768))
    assert (g.n_sources, g.n_inputs, g.n_edges) == (157, 445, 32491)
    assert len(g.edge_names) == len(set(g.edge_names)) == 32491
    assert "a0.h3->a2.h1<v>" in g.edge_position and "a1.h0->m1" in g.edge_position
    assert "m11->logits" in g.edge_position and "input->a0.h3<q>" in g.edge_position
    assert "a1.h0->a1.h1<q>" not in g.edge_position and "m1->m1" not in g.edge_position


@pytest.mark.parametrize("attn_only,parallel", [(True, False), (False, False), (False, True)])
def test_edges_match_enumeration(attn_only, parallel):
    g = Graph(GraphConfig(n_layers=3, n_heads=2, attn_only=attn_only, parallel_attn_mlp=parallel))
    expected = enumerate_edges(3, 2, attn_only, parallel)
    assert set(g.edge_names) == expected and g.n_edges == len(expected)
    if attn_only:  # by hand: input→3 layers·2 heads·3 + logits; a layer-l head → 3·2·(2−l) + 1
        assert g.n_edges == (18 + 1) + 2 * (12 + 1) + 2 * (6 + 1) + 2 * (0 + 1)


def test_edge_index_maps_round_trip():
    g = Graph(GraphConfig(n_layers=2, n_heads=3))
    for k, name in enumerate(g.edge_names):
        s, i = g.edge_matrix_index(name)
        assert g.edge_position[name] == k and g.edge_mask[s, i]
    mask = g.mask_from_edges(["a0.h1->m1", "input->logits"])
    assert g.edges_from_mask(mask) == ["input->logits", "a0.h1->m1"]  # graph order
    assert Graph.split_edge("a0.h1->a1.h2<k>") == ("a0.h1", "a1.h2", "k")
    assert Graph.split_edge("m0->logits") == ("m0", "logits", None)


@pytest.mark.parametrize("bad,msg", [("a0.h1-a1.h0<q>", "not of the form"), ("a5.h0->logits", "no source node"),
                                     ("a1.h0->a0.h0<q>", "does not write"), ("a0.h9->logits", "no source node"),
                                     ("input->m7", "no input")])
def test_bad_edge_names_say_what_is_wrong(bad, msg):
    g = Graph(GraphConfig(n_layers=2, n_heads=3))
    with pytest.raises(ValueError, match=msg):
        g.edge_matrix_index(bad)


@pytest.mark.parametrize("kw", [{}, {"attn_only": True}, {"parallel": True}])
def test_hook_names_exist_in_the_model(kw):
    model = tiny_model(**kw)
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    if not model.cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    g = Graph.from_model(model)
    names = set(model.hook_dict)
    for name, _ in g.source_hooks() + g.input_hooks():
        assert name in names
    assert g.cfg.to_dict()["parallel_attn_mlp"] == bool(kw.get("parallel"))

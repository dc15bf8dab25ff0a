"""GPT-2 small's published circuits (ACDC's ground truths) in edgewise names, and their pair generators."""
import edgewise as ew
from edgewise.zoo.gpt2 import greaterthan_circuit, greaterthan_pairs, ioi_circuit, ioi_pairs

GPT2 = ew.Graph(ew.GraphConfig(n_layers=12, n_heads=12, d_model=768))


def test_ioi_circuit_is_valid_and_has_the_class_structure():
    edges = ioi_circuit()
    assert len(edges) == len(set(edges)) == 963
    GPT2.mask_from_edges(edges)  # every name is a real GPT-2 edge
    assert {"a9.h9->logits", "a7.h3->a9.h9<q>", "a5.h5->a8.h6<k>", "a2.h2->a5.h5<v>", "input->a0.h1<q>"} <= set(edges)
    # S-inhibition heads steer the name movers' queries only; name movers do not feed other heads
    assert "a7.h3->a9.h9<k>" not in edges and "a9.h9->a10.h7<q>" not in edges
    assert not any(e.startswith("a1.h1->") or "a1.h1<" in e for e in edges)  # not a circuit head


def test_greaterthan_circuit_is_valid():
    edges = greaterthan_circuit()
    assert len(edges) == len(set(edges)) == 235
    GPT2.mask_from_edges(edges)
    assert {"input->a0.h1<q>", "a0.h1->m0", "a0.h5->a5.h5<k>", "m3->a9.h1<v>", "a8.h11->m8", "a9.h1->m11",
            "m11->logits", "m2->a7.h10<q>"} <= set(edges)
    assert "input->a5.h5<q>" not in edges and "a5.h5->a6.h1<q>" not in edges


def test_pair_generators():
    for rec in ioi_pairs(50):
        clean, corrupted = rec["clean"].split(), rec["corrupted"].split()
        assert len(clean) == len(corrupted) and sum(a != b for a, b in zip(clean, corrupted)) == 1
        assert rec["answer"].strip() in clean and rec["answer"] != rec["wrong_answer"]
    for rec in greaterthan_pairs(50):
        c, x = rec["clean"].split(), rec["corrupted"].split()
        assert x[-3].endswith("01") and c[-3][:2] == x[-3][:2] and c[:-3] + c[-2:] == x[:-3] + x[-2:]
        assert rec["clean"].endswith(" to " + c[-3][:2])
        assert int(rec["answer"]) - int(rec["wrong_answer"]) == 2
    assert ioi_pairs(5, seed=3) == ioi_pairs(5, seed=3)


def test_pair_generator_filters_by_tokenizer():
    model = ew.load_model("toy-ioi", device="cpu")  # word-level: every name is one token
    recs = ioi_pairs(20, model=model)
    assert len(recs) == 20 and len(ew.PromptPairs.from_records(model, recs)) == 20

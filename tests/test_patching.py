"""The fast patched forward against the slow truth: brute.patched_logits (TransformerLens's split q/k/v
and per-head results, one pair at a time) for masks that exercise every path of patching.py."""
import random
import weakref

import pytest
import torch
from brute import caches, patched_logits, source_act
from conftest import random_pairs, tiny_model
from test_attribution import shortformer_model

import edgewise as ew
from edgewise.activations import ablated_acts, edge_hooks_enabled, source_means
from edgewise.patch_plan import Plan
from edgewise import patching
from edgewise.patching import Patcher, run_patched


MODELS = {
    "ln-mlp": lambda: tiny_model(),
    "attn-only": lambda: tiny_model(attn_only=True),
    "parallel": lambda: tiny_model(parallel=True),
    "rms-norm": lambda: tiny_model(normalization="RMS"),
    "ln-pre": lambda: tiny_model(normalization="LNPre"),
    "no-norm": lambda: tiny_model(normalization=None),
    "shortformer": lambda: shortformer_model(),
}


def masks(graph, seed=0):
    """Removed-edge weights from almost none to almost all (bool), and fractional ones."""
    g = torch.Generator().manual_seed(seed)
    out = [(torch.rand(graph.n_sources, graph.n_inputs, generator=g) < p) & graph.edge_mask
           for p in (0.03, 0.3, 0.5, 0.7, 0.97)]
    out.append(torch.rand(graph.n_sources, graph.n_inputs, generator=g, dtype=torch.float64) * graph.edge_mask)
    return out


@pytest.mark.parametrize("config", MODELS)
@pytest.mark.parametrize("ablation", ["resample", "mean"])
def test_patched_forward_equals_brute_force(config, ablation):
    model = MODELS[config]()
    pairs = random_pairs(model)
    graph = ew.Graph.from_model(model)
    with edge_hooks_enabled(model):
        means = source_means(model, graph, pairs, 6, "cpu", False) if ablation == "mean" else None
        batch = next(pairs.batches(len(pairs), "cpu"))
        abl, _ = ablated_acts(model, graph, batch, ablation, means)
        ws = masks(graph)
        got = torch.stack([run_patched(model, graph, batch, abl, w) for w in ws])
    plans = [Plan(Patcher(model, graph), w[None]) for w in ws]
    assert any(lp["direct"] for p in plans for lp in p.layers) or config == "shortformer" or config == "no-norm"
    assert any(lp["n_dev"] and not lp["direct"] for p in plans for lp in p.layers)  # both q/k/v paths ran
    assert any(lp["kept_mode"] for p in plans for lp in p.layers) or config == "no-norm"
    layers = [lp for p in plans for lp in p.layers if lp["Wt"] is not None]
    assert any(lp["terms"] is not None for lp in layers) and any(lp["terms"] is None for lp in layers)  # gather and matmul
    assert any(not lp["kept_mode"] and (lp["Wt"][..., 0] != 0).any() for lp in layers)  # D − Σ_kept on a clean base
    for k, w in enumerate(ws):
        weights = {e: float(x) for e, x in zip(graph.edge_names, w[graph.edge_mask].tolist()) if x}
        for i in random.Random(k).sample(range(len(pairs)), 2):
            P = len(pairs.clean[i])
            cc, xc = caches(model, pairs.clean[i], pairs.corrupted[i])
            if ablation == "mean":
                repl = {s: means[graph.source_index[s]].view(1, 1, -1).expand(1, P, -1) for s in graph.source_names}
            else:
                repl = {s: source_act(xc, s) for s in graph.source_names}
            ref = patched_logits(model, pairs.clean[i], repl, weights)
            b = batch.index.tolist().index(i)
            torch.testing.assert_close(got[k, b, :P], ref[0], rtol=1e-9, atol=1e-9)


def test_no_patch_is_the_plain_forward_bit_for_bit_and_silent_sources_change_nothing():
    model = tiny_model(seed=3)
    with torch.no_grad():
        model.blocks[1].attn.W_O[0].zero_()  # a1.h0 writes nothing
    pairs = random_pairs(model)
    graph = ew.Graph.from_model(model)
    batch = next(pairs.batches(len(pairs), "cpu"))
    with edge_hooks_enabled(model), torch.no_grad():
        abl, _ = ablated_acts(model, graph, batch, "resample")
        plain = model(batch.clean)
        none = run_patched(model, graph, batch, abl, torch.zeros_like(graph.edge_mask))
        silent = graph.mask_from_edges([e for e in graph.edge_names if e.startswith("a1.h0->")])
        out_of_silent = run_patched(model, graph, batch, abl, silent)
    assert torch.equal(none, plain) and torch.equal(out_of_silent, plain)


def test_stacked_circuits_equal_one_at_a_time_in_one_forward():
    model = tiny_model(seed=5)
    pairs = random_pairs(model)
    graph = ew.Graph.from_model(model)
    batch = next(pairs.batches(4, "cpu"))
    ws = masks(graph, seed=2)[:4]
    calls = []
    with edge_hooks_enabled(model), torch.no_grad():
        abl, _ = ablated_acts(model, graph, batch, "zero")
        one = [run_patched(model, graph, batch, abl, w) for w in ws]
        handle = model.register_forward_hook(lambda *a: calls.append(1))
        stacked = run_patched(model, graph, batch, abl, torch.stack(ws))
        handle.remove()
    assert len(calls) == 1
    for k in range(len(ws)):
        torch.testing.assert_close(stacked[k], one[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", ["ln-mlp", "parallel", "no-norm", "shortformer", "gemma-2"])
def test_token_steps_change_nothing(config, monkeypatch, tmp_path):
    """δ stored step-major, the layers' matmuls and gathers one step of tokens at a time: one token
    per step (CHUNK of 1 byte) gives what one step of all tokens gives; post-norm heads included."""
    if config == "gemma-2":
        from hf_checkpoints import write_checkpoint
        model = ew.load_model(str(write_checkpoint(config, tmp_path / config)), device="cpu", dtype=torch.float64)
    else:
        model = MODELS[config]()
    pairs = random_pairs(model)
    graph = ew.Graph.from_model(model)
    batch = next(pairs.batches(len(pairs), "cpu"))
    ws = torch.stack(masks(graph, seed=4))
    steps, token_step = [], patching.token_step
    monkeypatch.setattr(patching, "token_step", lambda *a: steps.append(token_step(*a)) or steps[-1])
    with edge_hooks_enabled(model), torch.no_grad():
        abl, _ = ablated_acts(model, graph, batch, "resample")
        whole = run_patched(model, graph, batch, abl, ws)
        monkeypatch.setattr(patching, "CHUNK", 1)
        stepped = run_patched(model, graph, batch, abl, ws)
    assert steps == [batch.clean.numel(), 1]  # tokens per step
    torch.testing.assert_close(stepped, whole, rtol=1e-12, atol=1e-12)


def test_a_batch_reuses_its_buffer_and_frees_it_with_itself():
    """One δ buffer serves every patched forward of a batch (whatever the previous forward left in
    it), is shared by batches alive at once, and goes when they go."""
    model = tiny_model(seed=6)
    pairs = random_pairs(model)
    graph = ew.Graph.from_model(model)
    batch = next(pairs.batches(len(pairs), "cpu"))
    ws = masks(graph, seed=3)
    p = Patcher(model, graph)
    with edge_hooks_enabled(model), torch.no_grad():
        acts, _ = ablated_acts(model, graph, batch, "resample")
        abl, other = p.prepare(acts), p.prepare(acts)
        p.logits(batch, abl, torch.stack(ws))  # the biggest buffer, now full of another forward's δ
        buf = abl.scratch
        reused = [p.logits(batch, abl, w)[0] for w in ws]
        p.logits(batch, other, ws[0])
        fresh = [run_patched(model, graph, batch, acts, w) for w in ws]
    assert abl.scratch is buf and other.scratch is buf
    for got, want in zip(reused, fresh):
        assert torch.equal(got, want)
    ref = weakref.ref(buf)
    del abl, other, buf
    assert ref() is None

"""Memory flat in the number of pairs: nothing a batch creates outlives it, even with Python's cyclic
garbage collector off (a reference cycle would keep a batch's activations until the collector ran)."""
import gc
import weakref

import pytest
from conftest import random_pairs, tiny_model

import edgewise as ew
from edgewise import activations, patching
from edgewise.evaluate import CircuitEvaluator


class Tracker:
    """Weak references to each batch's big tensors: its activations ([n_sources, B, P, d]), the
    patched forward's prepared copy and δ buffer, and every logits tensor the model returns."""

    def __init__(self, model, monkeypatch):
        self.refs: list[weakref.ref] = []
        self.overlaps = 0  # a new batch's activations created while an older one is alive
        new_acts, prepare = activations.new_acts, patching.Patcher.prepare

        def tracked_acts(*a, **kw):
            self.overlaps += self.alive()
            t = new_acts(*a, **kw)
            self.refs.append(weakref.ref(t))
            return t

        def tracked_prepare(patcher, abl):
            out = prepare(patcher, abl)
            self.refs += [weakref.ref(out.acts), weakref.ref(out.head_sums)]
            return out

        scratch = patching.Patcher.scratch

        def tracked_scratch(patcher, abl, shape):  # the δ buffer a batch keeps for its patched forwards
            out = scratch(patcher, abl, shape)
            self.refs.append(weakref.ref(abl.scratch))
            return out

        monkeypatch.setattr(activations, "new_acts", tracked_acts)
        monkeypatch.setattr(patching.Patcher, "prepare", tracked_prepare)
        monkeypatch.setattr(patching.Patcher, "scratch", tracked_scratch)
        self.handle = model.register_forward_hook(lambda mod, inp, out: self.refs.append(weakref.ref(out)))

    def alive(self) -> int:
        return sum(r() is not None for r in self.refs)


@pytest.fixture
def no_gc():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("method", ["eap", "eap-ig-inputs", "exact"])
@pytest.mark.parametrize("ablation", ["resample", "mean"])
def test_attribution_frees_each_batch_before_the_next(method, ablation, monkeypatch, no_gc):
    model = tiny_model()
    pairs = random_pairs(model, n=8)
    t = Tracker(model, monkeypatch)
    res = ew.attribute(model, pairs, method=method, ablation=ablation, batch_size=2, ig_steps=2)
    t.handle.remove()
    assert len(t.refs) >= 8 and t.overlaps == 0 and t.alive() == 0
    assert res.scores.abs().max() > 0


def test_evaluation_and_curve_free_each_batch(monkeypatch, no_gc):
    model = tiny_model()
    pairs = random_pairs(model, n=8)
    scores = ew.attribute(model, pairs).scores
    t = Tracker(model, monkeypatch)
    ew.faithfulness_curve(model, pairs, scores, batch_size=2, ks=[0, 3, 10, 50])
    ev = CircuitEvaluator(model, pairs, ablation="zero", batch_size=2)
    ev.per_pair(ew.Circuit.from_scores(ev.graph, scores, top_k=7))
    ew.mib_scores(model, pairs, scores, batch_size=3)
    t.handle.remove()
    assert t.overlaps == 0 and t.alive() == 0
    cached = CircuitEvaluator(model, pairs, batch_size=2, cache=True)  # what it keeps, it keeps on purpose
    cached.metrics([ev.graph.edge_mask])
    assert cached.n_cached == 4

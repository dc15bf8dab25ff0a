"""interp-lookup, the SIIT-trained model: it solves its task, it follows its high-level model under
interchanges, and its trained-in edge set is the truth by brute force (every circuit edge alone
moves the metric, every other edge alone does not), with the faithfulness task.json claims."""
import pytest
import torch

import edgewise as ew
from edgewise.models import load_model
from edgewise.tasks import load_task

DIGIT0, ITEM0, KEY0 = 1, 101, 141  # token ids: number 0, item (key A, value 0), key A (tools/train_interp.py)


@pytest.fixture(scope="module")
def task():
    return load_task("interp-lookup", model=load_model("interp-lookup", device="cpu"))


def hl(x: list[int], swap: dict | None = None) -> int:
    """The task's high-level model, written again here: 10·d + the value of the item whose key is q.
    `swap` overrides variables: D (the offset), I (the looked-up value), S (the answer)."""
    swap = swap or {}
    d = swap.get("D", x[1] - DIGIT0)
    items = {(t - ITEM0) // 10: (t - ITEM0) % 10 for t in x[2:6]}
    i = swap.get("I", items[x[6] - KEY0])
    return swap.get("S", 10 * d + i)


def test_solves_task(task):
    x = torch.tensor(task.pairs.clean)
    with torch.no_grad():
        pred = task.hooked_model(x)[:, -1].argmax(-1) - DIGIT0
    truth = torch.tensor([hl(r) for r in task.pairs.clean])
    assert (pred == truth).float().mean() >= 0.98
    assert all(hl(c) + DIGIT0 == a for c, a in zip(task.pairs.clean, task.pairs.answer))


def test_circuit_reaches_claimed_faithfulness(task):
    f = ew.evaluate(task.hooked_model, task.pairs, task.circuit, metric="logit_diff")
    assert f.normalized >= task.spec["faithfulness"] - 0.02 and f.normalized > 0.9


def test_truth_by_brute_force(task):
    """Exact patching of each edge alone: every circuit edge moves the logit difference a lot,
    every other edge hardly — so ROC-AUC against the truth is 1 for brute force."""
    # one batch of all 200 pairs: 262 patched passes (scores do not depend on batching)
    res = ew.attribute(task.hooked_model, task.pairs, method="exact", metric="logit_diff", batch_size=200)
    f = ew.evaluate(task.hooked_model, task.pairs, [], metric="logit_diff", batch_size=200)
    gap = f.metric_clean - f.metric_corrupted
    inside = res.graph.mask_from_edges(task.circuit)[res.graph.edge_mask]
    s = res.scores.abs() / gap
    assert s[inside].min() >= task.spec["exact_min_in_circuit"] - 0.02 and s[inside].min() > 0.1
    assert s[~inside].max() <= task.spec["exact_max_outside"] + 0.01 and s[~inside].max() < 0.06
    assert ew.roc_auc(res.scores, inside)[2] == 1.0


@pytest.mark.parametrize("variable", ["D", "I", "S"])
def test_follows_high_level_model_under_interchange(task, variable):
    """Patch every outgoing edge of the node aligned with `variable` from the corrupted prompt: the
    model then gives what the HL gives with that variable taken from the corrupted prompt."""
    node = task.spec["alignment"][variable]
    recs = []
    for clean, corrupted in zip(task.pairs.clean, task.pairs.corrupted):
        source = {"D": corrupted[1] - DIGIT0, "I": hl(corrupted) % 10, "S": hl(corrupted)}[variable]
        target, original = hl(clean, {variable: source}), hl(clean)
        if target != original:
            recs.append({"clean": clean, "corrupted": corrupted, "answer": target + DIGIT0,
                         "wrong_answer": original + DIGIT0})
    assert len(recs) > 100
    model = task.hooked_model
    pairs = ew.PromptPairs.from_records(model, recs)
    g = ew.Graph.from_model(model)
    keep = g.edge_mask.clone()
    keep[g.source_index[node]] = False  # every edge out of `node` carries the corrupted activation
    f = ew.evaluate(model, pairs, keep, metric="logit_diff")
    assert f.metric_clean < -5          # unpatched: the model prefers the original answer
    assert f.metric_circuit > 5         # interchanged: it prefers the HL's counterfactual

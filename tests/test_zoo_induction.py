"""toy-induction: it solves its task, its pairs contrast induction only, and its shipped circuit
(read off the attention patterns) reaches the faithfulness task.json and docs/zoo.md claim."""
import pytest
import torch

import edgewise as ew
from edgewise.models import load_model
from edgewise.tasks import load_task


@pytest.fixture(scope="module")
def task():
    return load_task("toy-induction", model=load_model("toy-induction", device="cpu"))


def clean_and_corrupted_logit_diff(model, pairs):
    """Mean logit(answer) − logit(wrong_answer) at the last position on clean and corrupted prompts, and accuracy."""
    out = []
    for key in ("clean", "corrupted"):
        x = torch.tensor(getattr(pairs, key))
        with torch.no_grad():
            last = model(x)[:, -1]
        ans, wrong = torch.tensor(pairs.answer), torch.tensor(pairs.wrong_answer)
        out.append(((last.gather(1, ans[:, None]) - last.gather(1, wrong[:, None])).mean().item(),
                    (last.argmax(-1) == ans).float().mean().item()))
    return out


def test_solves_task_and_the_corruption_flips_the_answer(task):
    (ld_clean, acc), (ld_corrupted, _) = clean_and_corrupted_logit_diff(task.hooked_model, task.pairs)
    assert acc >= 0.95 and ld_clean > 5
    # the corrupted prompt predicts its own successor (the wrong answer): the contrast is induction's
    assert ld_corrupted < -5
    assert ld_clean == pytest.approx(task.spec["mean_logit_diff"], abs=1e-3)


def test_pairs_hold_the_same_tokens_and_differ_in_order_only(task):
    for clean, corrupted, wrong in zip(task.pairs.clean, task.pairs.corrupted, task.pairs.wrong_answer):
        assert sorted(clean) == sorted(corrupted) and clean[-5:] == corrupted[-5:]
        first = corrupted[1:9]
        assert first[first.index(clean[-1]) + 1] == wrong  # in the corrupted prompt, the current token precedes it


def test_circuit_heads_are_the_attention_roles(task):
    """The circuit's previous-token head attends to the token before; its induction heads attend to the
    token after the earlier occurrence (scores measured here, on repeated random segments)."""
    model = task.hooked_model
    g = torch.Generator().manual_seed(5)
    seg = torch.stack([torch.randperm(63, generator=g)[:10] + 1 for _ in range(40)])
    toks = torch.cat([torch.zeros(40, 1, dtype=torch.long), seg, seg], 1)
    _, cache = model.run_with_cache(toks)
    q = torch.arange(2, 21)
    prev = cache["pattern", 0][:, :, q, q - 1].mean((0, 2))
    q = torch.arange(11, 21)                  # second occurrence; the token after the first is 9 back
    ind = cache["pattern", 1][:, :, q, q - 9].mean((0, 2))
    srcs = {e.split("->")[0] for e in task.circuit if e.startswith("a0.")}
    dsts = {e.split("->")[0] for e in task.circuit if e.startswith("a1.")}
    assert srcs == {f"a0.h{h}" for h in range(2) if prev[h] >= 0.3}
    assert dsts == {f"a1.h{h}" for h in range(2) if ind[h] >= 0.3}
    assert ind.max() > 0.9 and prev.max() > 0.5


def test_shipped_circuit_reaches_claimed_faithfulness(task):
    f = ew.evaluate(task.hooked_model, task.pairs, task.circuit, metric="logit_diff")
    assert f.normalized >= task.spec["faithfulness"] - 0.02 and f.normalized > 0.95
    # without the key edge the circuit loses most of it: the K-composition carries the contrast
    rest = [e for e in task.circuit if e != task.spec["key_edge"]]
    assert ew.evaluate(task.hooked_model, task.pairs, rest, metric="logit_diff").normalized < 0.4


def test_key_edge_ranks_where_docs_say(task):
    """Exact patching (brute force) puts the whole previous-token → induction path on top; the key
    edge within the top 3 of 29, EAP (saturated attention) within the top 5."""
    ranks = task.spec["key_edge_rank"]
    model, pairs, key = task.hooked_model, task.pairs, task.spec["key_edge"]
    for method, claimed in ranks.items():
        res = ew.attribute(model, pairs, method=method, metric="logit_diff")
        order = [res.edges[i] for i in res.ranking().tolist()]
        assert order.index(key) + 1 <= claimed, (method, order[:6])
        if method == "exact":
            assert set(order[:5]) == set(task.circuit)  # the circuit is exactly the top 5 by brute force

"""toy-ioi: it solves IOI in both name orders, its pairs are the ABC distribution, its role heads
attend as docs/zoo.md says, and its role circuit reaches the faithfulness task.json claims."""
import pytest
import torch

import edgewise as ew
from edgewise.models import load_model
from edgewise.tasks import load_task


@pytest.fixture(scope="module")
def task():
    return load_task("toy-ioi", model=load_model("toy-ioi", device="cpu"))


def names(rec):
    """IO and S of a record (its answer and wrong answer)."""
    return rec["answer"].strip(), rec["wrong_answer"].strip()


def test_tokenizer_is_word_level_with_bos(task):
    model = task.hooked_model
    assert model.to_single_token(" Mary") == model.to_single_token("Mary")
    toks = model.to_tokens("When Mary and John went to the store, John gave a drink to")
    assert toks.shape[1] == 15 and toks[0, 0] == model.tokenizer.bos_token_id  # BOS + 14 words
    assert model.cfg.default_prepend_bos


def test_solves_task_in_both_orders(task):
    model, pairs = task.hooked_model, task.pairs
    by_order = {"ABBA": [], "BABA": []}
    for rec, batch_diff in zip(pairs.records, per_pair(model, pairs, "clean")):
        io, s = names(rec)
        words = rec["clean"].replace(",", " ").replace(".", " ").split()
        by_order["ABBA" if words.index(io) < words.index(s) else "BABA"].append(batch_diff)
    assert len(by_order["ABBA"]) == len(by_order["BABA"]) == 100
    for order, diffs in by_order.items():
        d = torch.tensor(diffs)
        assert (d > 0).float().mean() >= 0.98 and d.mean() > 5, order
    assert abs(sum(per_pair(model, pairs, "corrupted")) / len(pairs)) < 1.0  # ABC: no name to prefer


def per_pair(model, pairs, key):
    out = []
    for batch in pairs.batches(100):
        with torch.no_grad():
            last = model(getattr(batch, key))[torch.arange(len(batch)), batch.last]
        d = last.gather(1, batch.answer[:, None])[:, 0] - last.gather(1, batch.wrong_answer[:, None])[:, 0]
        out += list(zip(batch.index.tolist(), d.tolist()))
    return [d for _, d in sorted(out)]


def test_corruption_is_abc(task):
    """All three name positions change, to three distinct names none of which is in the clean prompt."""
    for rec in task.pairs.records:
        clean, corrupted = rec["clean"].split(), rec["corrupted"].split()
        io, s = names(rec)
        differ = [i for i, (a, b) in enumerate(zip(clean, corrupted)) if a != b]
        assert len(clean) == len(corrupted) and len(differ) == 3
        new = [corrupted[i].strip(",.") for i in differ]
        assert sorted(clean[i].strip(",.") for i in differ) == sorted([io, s, s])
        assert len(set(new)) == 3 and not set(new) & {io, s}


def test_role_heads_attend_as_claimed(task):
    """Movers attend from the last token to S2; IO finders attend from S2 to IO (not to S1)."""
    model, pairs = task.hooked_model, task.pairs
    sums = {k: torch.zeros(model.cfg.n_layers, model.cfg.n_heads) for k in ("end_s2", "s2_io", "s2_s1")}
    for batch in pairs.batches(100):
        with torch.no_grad():
            _, cache = model.run_with_cache(batch.clean, names_filter=lambda n: n.endswith("hook_pattern"))
        rows = torch.arange(len(batch))
        io, s = batch.answer, batch.wrong_answer
        first = lambda t: (batch.clean == t[:, None]).float().argmax(1)  # noqa: E731  (first position of a token)
        s2 = (batch.clean.shape[1] - 1) - (batch.clean.flip(1) == s[:, None]).float().argmax(1)  # last S
        for L in range(model.cfg.n_layers):
            a = cache["pattern", L]
            sums["end_s2"][L] += a[rows, :, batch.last, s2].sum(0)
            sums["s2_io"][L] += a[rows, :, s2, first(io)].sum(0)
            sums["s2_s1"][L] += a[rows, :, s2, first(s)].sum(0)
    att = {k: v / len(pairs) for k, v in sums.items()}
    roles = task.spec["roles"]
    assert roles["movers"] and roles["io_finders"]
    for h in roles["movers"]:
        L, i = int(h[1]), int(h.split(".h")[1])
        assert att["end_s2"][L, i] >= 0.75, h
    for h in roles["io_finders"]:
        L, i = int(h[1]), int(h.split(".h")[1])
        assert att["s2_io"][L, i] >= 0.4 and att["s2_io"][L, i] > 2 * att["s2_s1"][L, i], h
    # no other head of layers ≥ 1 attends END→S2 that strongly, no other layer-0 head finds IO
    movers = {(int(h[1]), int(h.split(".h")[1])) for h in roles["movers"]}
    finders = {(int(h[1]), int(h.split(".h")[1])) for h in roles["io_finders"]}
    for L in range(model.cfg.n_layers):
        for i in range(model.cfg.n_heads):
            if L >= 1 and (L, i) not in movers:
                assert att["end_s2"][L, i] < 0.75
            if L == 0 and (L, i) not in finders:
                assert att["s2_io"][L, i] < 0.4


def test_role_circuit_reaches_claimed_faithfulness(task):
    model, pairs = task.hooked_model, task.pairs
    circuit = task.circuit
    assert circuit and len(circuit) < 100
    f = ew.evaluate(model, pairs, circuit, metric="logit_diff")
    assert f.normalized >= task.spec["faithfulness"] - 0.02
    # the IO finders are needed: without their edges into m0 most of it is lost
    finders = task.spec["roles"]["io_finders"]
    rest = [e for e in circuit if not any(e.startswith(h + "->") for h in finders)]
    assert ew.evaluate(model, pairs, rest, metric="logit_diff").normalized < f.normalized - 0.2

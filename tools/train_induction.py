"""Train `toy-induction`: a 2-layer attention-only transformer that completes repeated random segments.

    .venv/bin/python tools/train_induction.py        # seeded, CPU, about a minute

Sequences: BOS, a segment A of distinct random tokens (length 4..12), 0..3 random filler tokens, then
A repeated until the context is full; the loss is taken on the repeats only. Only an induction
circuit can solve it: a previous-token head in layer 0 writes "the token before me" into each
position, and an induction head in layer 1 whose key reads that (K-composition) attends from the
current token to the token after its earlier occurrence and copies it.
Token ids only (no tokenizer): 0 is BOS, 1..63 are content tokens.
"""
from __future__ import annotations

import argparse
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from zoo_io import save_model, save_task

SEED, V, N_CTX, BOS = 0, 64, 24, 0


def make_config(n_heads: int = 2) -> HookedTransformerConfig:
    return HookedTransformerConfig(
        model_name="toy-induction", n_layers=2, n_heads=n_heads, d_model=64, d_head=64 // n_heads, n_ctx=N_CTX, d_vocab=V,
        attn_only=True, act_fn=None, normalization_type=None, positional_embedding_type="standard",
        default_prepend_bos=False, seed=SEED, device="cpu")


def batch(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, N_CTX] tokens and a [n, N_CTX] mask of positions whose next token is predictable."""
    toks = torch.zeros(n, N_CTX, dtype=torch.long)
    mask = torch.zeros(n, N_CTX, dtype=torch.bool)
    for b in range(n):
        m = int(torch.randint(4, 13, (1,), generator=g))
        f = int(torch.randint(0, 4, (1,), generator=g))
        seg = torch.randperm(V - 1, generator=g)[:m] + 1
        filler = torch.randint(1, V, (f,), generator=g)
        start = 1 + m + f
        rep = seg.repeat(N_CTX // m + 1)[: N_CTX - start]
        toks[b] = torch.cat([torch.tensor([BOS]), seg, filler, rep])
        mask[b, start:N_CTX - 1] = True  # position p predicts token p+1, a repeat
    return toks, mask


def train(steps: int = 6000, batch_size: int = 64, lr: float = 2e-3, n_heads: int = 2,
          weight_decay: float = 0.01) -> HookedTransformer:
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    model = HookedTransformer(make_config(n_heads))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        toks, mask = batch(g, batch_size)
        logp = model(toks).log_softmax(-1)[:, :-1]
        nll = -logp.gather(-1, toks[:, 1:, None])[..., 0]
        loss = nll[mask[:, :-1]].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    return model.eval()


def make_pairs(n: int = 100, seg_len: int = 8, prefix: int = 5, seed: int = 1) -> list[dict]:
    """clean = BOS, A, A[:prefix]: the last token A[prefix-1] occurred before, followed by A[prefix],
    the answer. corrupted = the same tokens with A[prefix-1]'s earlier occurrence swapped with A[j]
    (j < prefix-2), so there it is followed by A[j+1], the wrong_answer. Both prompts hold the same
    tokens and end in the same token; only which token followed the current one earlier differs —
    the one thing induction (previous-token head → induction head key) reads. The logit diff
    flips sign between the prompts: clean ≈ +12, corrupted ≈ −18."""
    g = torch.Generator().manual_seed(seed)
    records = []
    for _ in range(n):
        a = (torch.randperm(V - 1, generator=g) + 1)[:seg_len].tolist()
        j = int(torch.randint(0, prefix - 2, (1,), generator=g))
        first = list(a)
        first[j], first[prefix - 1] = a[prefix - 1], a[j]
        records.append({"clean": [BOS, *a, *a[:prefix]], "corrupted": [BOS, *first, *a[:prefix]],
                        "answer": a[prefix], "wrong_answer": a[j + 1]})
    return records


def head_scores(model: HookedTransformer) -> tuple[torch.Tensor, torch.Tensor]:
    """Previous-token score of layer-0 heads and induction score of layer-1 heads on repeated
    random sequences: mean attention to position i−1, and to the token after the earlier occurrence."""
    g = torch.Generator().manual_seed(123)
    m = 10
    seg = torch.stack([torch.randperm(V - 1, generator=g)[:m] + 1 for _ in range(50)])
    toks = torch.cat([torch.full((50, 1), BOS), seg, seg], 1)
    _, cache = model.run_with_cache(toks)
    pat0, pat1 = cache["pattern", 0], cache["pattern", 1]  # [b, head, query, key]
    q = torch.arange(2, 2 * m + 1)
    prev = pat0[:, :, q, q - 1].mean((0, 2))
    q2 = torch.arange(m + 1, 2 * m + 1)
    ind = pat1[:, :, q2, q2 - m + 1].mean((0, 2))
    return prev, ind


def evaluate(model: HookedTransformer, records: list[dict]) -> tuple[float, float]:
    clean = torch.tensor([r["clean"] for r in records])
    ans = torch.tensor([r["answer"] for r in records])
    wrong = torch.tensor([r["wrong_answer"] for r in records])
    with torch.no_grad():
        last = model(clean)[:, -1]
    acc = (last.argmax(-1) == ans).float().mean().item()
    ld = (last.gather(1, ans[:, None]) - last.gather(1, wrong[:, None])).mean().item()
    return acc, ld


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--name", default="toy-induction")
    ap.add_argument("--reuse", action="store_true", help="keep the zoo weights; rewrite pairs and task.json")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add sync cost (100× slower on a busy CPU)
    if args.reuse:
        from edgewise.models import load_model
        model = load_model(args.name, device="cpu")
    else:
        model = train(args.steps, n_heads=args.heads, weight_decay=args.weight_decay)
    prev, ind = head_scores(model)
    records = make_pairs()
    acc, ld = evaluate(model, records)
    print(f"prev-token scores (layer 0): {prev.tolist()}; induction scores (layer 1): {ind.tolist()}")
    print(f"toy-induction: accuracy {acc:.3f}, mean logit diff {ld:.3f} on {len(records)} pairs "
          f"({time.time() - t0:.0f} s)")
    if not args.reuse:
        save_model(model, args.name, "tools/train_induction.py")
    circuit, evidence = role_circuit(model, records, prev, ind)
    save_task(args.name, records, {
        "metric": "logit_diff",
        "description": "induction: after BOS A A[:5] (A: 8 distinct random tokens) predict A[5]; the corrupted "
                       "prompt moves the earlier occurrence of the last token before another token of A "
                       "(same tokens, another successor: the wrong answer)",
        "circuit": circuit,
        "circuit_source": ("heads by attention pattern (previous-token score ≥ 0.3 in layer 0, induction score ≥ 0.3 "
                           "in layer 1), edges the pairs change: the token the previous-token head copies, its "
                           "K-composition into each induction head, their writes. Previous-token scores of layer 0: "
                           f"{[round(x, 2) for x in prev.tolist()]}; induction scores of layer 1: "
                           f"{[round(x, 2) for x in ind.tolist()]}"),
        **evidence, "accuracy": round(acc, 4), "mean_logit_diff": round(ld, 4)})


def role_circuit(model, records, prev, ind, threshold: float = 0.3) -> tuple[list[str], dict]:
    """The induction circuit from attention scores, and how it measures up with edgewise:
    faithfulness, and the rank of the key edge (strongest previous-token → induction key) per method."""
    import edgewise as ew

    prevs = [h for h in range(len(prev)) if prev[h] >= threshold]
    inds = [h for h in range(len(ind)) if ind[h] >= threshold]
    circuit = ([f"input->a0.h{p}<v>" for p in prevs] + [f"a0.h{p}->a1.h{i}<k>" for p in prevs for i in inds]
               + [f"a1.h{i}->logits" for i in inds])
    key = f"a0.h{int(prev.argmax())}->a1.h{int(ind.argmax())}<k>"
    pairs = ew.PromptPairs.from_records(model, records)
    ranks = {}
    for method in ("exact", "eap", "eap-ig-inputs"):
        res = ew.attribute(model, pairs, method=method, metric="logit_diff")
        ranks[method] = [res.edges[k] for k in res.ranking().tolist()].index(key) + 1
    faith = ew.evaluate(model, pairs, circuit, metric="logit_diff")
    print(f"circuit {circuit}: faithfulness {faith.normalized:.3f}; key edge {key} ranks {ranks}")
    return circuit, {"key_edge": key, "key_edge_rank": ranks, "faithfulness": round(faith.normalized, 3),
                     "mean_logit_diff_corrupted": round(faith.metric_corrupted, 4)}


if __name__ == "__main__":
    main()

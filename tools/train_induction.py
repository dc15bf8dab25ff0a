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

import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from zoo_io import save_model, save_task

SEED, V, N_CTX, BOS = 0, 64, 24, 0


def make_config() -> HookedTransformerConfig:
    return HookedTransformerConfig(
        model_name="toy-induction", n_layers=2, n_heads=2, d_model=64, d_head=32, n_ctx=N_CTX, d_vocab=V,
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


def train(steps: int = 2500, batch_size: int = 64, lr: float = 1e-3) -> HookedTransformer:
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    model = HookedTransformer(make_config())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    for step in range(steps):
        toks, mask = batch(g, batch_size)
        logp = model(toks).log_softmax(-1)[:, :-1]
        nll = -logp.gather(-1, toks[:, 1:, None])[..., 0]
        loss = nll[mask[:, :-1]].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    return model.eval()


def make_pairs(n: int = 100, seg_len: int = 8, prefix: int = 5, seed: int = 1) -> list[dict]:
    """clean = BOS, A, A[:prefix] → answer A[prefix] (the token after the last token's earlier
    occurrence). corrupted = BOS, B, A[:prefix] with B disjoint from A → wrong_answer B[prefix]."""
    g = torch.Generator().manual_seed(seed)
    records = []
    for _ in range(n):
        perm = (torch.randperm(V - 1, generator=g) + 1).tolist()
        a, b = perm[:seg_len], perm[seg_len:2 * seg_len]
        records.append({"clean": [BOS, *a, *a[:prefix]], "corrupted": [BOS, *b, *a[:prefix]],
                        "answer": a[prefix], "wrong_answer": b[prefix]})
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
    t0 = time.time()
    torch.set_num_threads(2)
    model = train()
    prev, ind = head_scores(model)
    p, i = int(prev.argmax()), int(ind.argmax())
    records = make_pairs()
    acc, ld = evaluate(model, records)
    print(f"prev-token scores (layer 0): {prev.tolist()}; induction scores (layer 1): {ind.tolist()}")
    print(f"toy-induction: accuracy {acc:.3f}, mean logit diff {ld:.3f} on {len(records)} pairs "
          f"({time.time() - t0:.0f} s)")
    circuit = [f"input->a0.h{p}<q>", f"input->a0.h{p}<k>", f"input->a0.h{p}<v>", f"a0.h{p}->a1.h{i}<k>",
               f"input->a1.h{i}<q>", f"input->a1.h{i}<v>", f"a1.h{i}->logits"]
    save_model(model, "toy-induction", "tools/train_induction.py")
    save_task("toy-induction", records, {
        "metric": "logit_diff",
        "description": "complete a repeated random segment: after BOS A A[:5], predict A[5] (induction)",
        "circuit": circuit,
        "circuit_source": (f"expected by construction: previous-token head a0.h{p} (score {prev[p]:.2f}) feeds "
                           f"induction head a1.h{i} (score {ind[i]:.2f}) through its key (K-composition); "
                           "the query and value read the current tokens, the head writes the answer"),
        "key_edge": f"a0.h{p}->a1.h{i}<k>",
        "accuracy": round(acc, 4), "mean_logit_diff": round(ld, 4)})


if __name__ == "__main__":
    main()

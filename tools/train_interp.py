"""Train `interp-lookup`: a transformer whose circuit is known because SIIT put it there.

    .venv/bin/python tools/train_interp.py        # seeded, CPU, one thread, a few minutes

Task: BOS d (k1,v1) (k2,v2) (k3,v3) (k4,v4) q  →  10·d + v_j where k_j = q.
d and the v's are digits 0–9; each item (k,v) is one token (key A–D, value 0–9; the four keys in
random order), q is one of the keys: look up the value stored under the query key and put the
offset d in front of it (answers are the numbers 0–99, one token each). 10·d + v rather than
(d + v) mod 10: with the modulus neither d nor v alone says anything about the answer, and
training sat at chance for thousands of steps. A two-token lookup (key, then value) needs a
previous-token head and an induction-style head: trained plainly it learned within 400 steps for
one init of four, not within 800–1,500 for the others; the one-token lookup took 300 for both tried.

High-level causal model (HL), each variable aligned with one component of a 3-layer, 4-head model
with LayerNorm and GELU MLPs (262 edges):
    D = a0.h3   the offset d, moved to the last position
    I = a0.h1   the value of the item whose key is q: its query reads q, its key the items' keys,
                its value the items' values
    S = m2      10·D + I, read by the unembedding
The true circuit (7 edges) is the HL graph in edgewise's names: input→a0.h3<v>, input→a0.h1<q>,
input→a0.h1<k>, input→a0.h1<v>, a0.h3→m2, a0.h1→m2, m2→logits. Every prompt has the same layout,
so a0.h3's query and key (which carry only position) are equal in both prompts of a pair and are
outside the truth, as in auto-circuit's official tracr circuits. Edges the HL lacks between its
nodes (a0.h1→logits, a0.h3→logits, input→m2, …) are outside it too, and trained to not matter;
so is everything else (m0, layer 1, m1, layer 2). With the lookup head in layer 1 instead, it
learned to read the items through m0 (an extended embedding), and after 5,000 steps the circuit
alone still answered 10% of prompts (exact scores of its own q/k/v inputs: 0).

Training (strict IIT, tools/siit.py): per example a base and an independent source prompt; in
three quarters of the examples each HL variable is interchanged with probability ½ (every outgoing
edge of its node carries the source's output), and in every example a random set of non-circuit
edges is patched as well (none ⅛, one edge ⅛, each with probability ½ ¼, all ½); cross-entropy
against the HL's output under the same interchange. 5,000 steps of 64 examples, AdamW, one-cycle
learning rate to 2e-3.
"""
from __future__ import annotations

import argparse
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import siit
from edgewise import Graph
from zoo_io import save_model, save_task

SEED = 0
N_KEYS = 4
BOS, DIGIT0, ITEM0, KEY0 = 0, 1, 101, 141   # token ids: BOS, numbers 0–99, items (k,v) = 101 + 10k + v, keys A–D
D_VOCAB, N_CTX = 145, 7
ALIGN = {"D": "a0.h3", "I": "a0.h1", "S": "m2"}
CIRCUIT = [f"input->{ALIGN['D']}<v>", f"input->{ALIGN['I']}<q>", f"input->{ALIGN['I']}<k>", f"input->{ALIGN['I']}<v>",
           f"{ALIGN['D']}->{ALIGN['S']}", f"{ALIGN['I']}->{ALIGN['S']}", f"{ALIGN['S']}->logits"]


def make_config() -> HookedTransformerConfig:
    return HookedTransformerConfig(
        model_name="interp-lookup", n_layers=3, n_heads=4, d_model=64, d_head=16, d_mlp=128, n_ctx=N_CTX,
        d_vocab=D_VOCAB, act_fn="gelu", normalization_type="LN", positional_embedding_type="standard",
        default_prepend_bos=False, seed=SEED, device="cpu")


def sample(n: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 7] prompts: BOS d (k1,v1) … (k4,v4) q."""
    d = torch.randint(0, 10, (n, 1), generator=gen) + DIGIT0
    keys = torch.stack([torch.randperm(N_KEYS, generator=gen) for _ in range(n)])
    vals = torch.randint(0, 10, (n, N_KEYS), generator=gen)
    q = keys.gather(1, torch.randint(0, N_KEYS, (n, 1), generator=gen))
    return torch.cat([torch.full((n, 1), BOS), d, ITEM0 + 10 * keys + vals, KEY0 + q], 1)


def hl_variables(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The HL's variables on prompts x: D, I (digits 0–9) and S = 10·D + I, each [n]."""
    items = x[:, 2:6] - ITEM0
    match = items // 10 == (x[:, 6:] - KEY0)           # exactly one item has the query's key
    i = (items % 10)[match]
    d = x[:, 1] - DIGIT0
    return {"D": d, "I": i, "S": 10 * d + i}


def hl_output(base: torch.Tensor, source: torch.Tensor, swap: torch.Tensor) -> torch.Tensor:
    """The HL's output on `base` with the variables flagged in swap ([n, 3] over D, I, S) from `source`."""
    b, s = hl_variables(base), hl_variables(source)
    D = torch.where(swap[:, 0], s["D"], b["D"])
    I = torch.where(swap[:, 1], s["I"], b["I"])
    return torch.where(swap[:, 2], s["S"], 10 * D + I)


def train(steps: int, batch_size: int = 64, lr: float = 2e-3) -> HookedTransformer:
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = HookedTransformer(make_config())
    graph = Graph.from_model(model)
    circuit = graph.mask_from_edges(CIRCUIT)
    rows = torch.stack([siit.node_rows(graph, [n]) for n in ALIGN.values()])  # [3, n_src, n_in]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        base, source = sample(batch_size, gen), sample(batch_size, gen)
        swap = torch.rand(batch_size, len(ALIGN), generator=gen) < 0.5
        swap[: batch_size // 4] = False                           # a quarter: plain behaviour + strictness
        mask = siit.strict_masks(graph, circuit, batch_size, gen)
        mask |= (swap.float() @ rows.flatten(1).float()).view_as(mask) > 0
        target = hl_output(base, source, swap)
        logits = siit.run_patched(model, graph, base, siit.source_acts(model, graph, source), mask)[:, -1]
        loss = torch.nn.functional.cross_entropy(logits, target + DIGIT0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            acc = (logits.argmax(-1) == target + DIGIT0).float().mean().item()
            print(f"step {step:5d}  loss {loss.item():.4f}  interchange accuracy {acc:.3f}", flush=True)
    return model.eval()


def make_pairs(n: int = 200, seed: int = 1) -> list[dict]:
    """Clean and corrupted are independent prompts (resampling, as SIIT trains); answer = the clean
    output, wrong_answer = the corrupted prompt's output (redrawn until they differ)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        clean, corrupted = sample(1, gen), sample(1, gen)
        a, w = int(hl_variables(clean)["S"]), int(hl_variables(corrupted)["S"])
        if a != w:
            out.append({"clean": clean[0].tolist(), "corrupted": corrupted[0].tolist(),
                        "answer": a + DIGIT0, "wrong_answer": w + DIGIT0})
    return out


def accuracy(model, records) -> tuple[float, float]:
    """Argmax over the whole vocabulary is the answer; mean logit diff."""
    x = torch.tensor([r["clean"] for r in records])
    ans, wrong = torch.tensor([r["answer"] for r in records]), torch.tensor([r["wrong_answer"] for r in records])
    with torch.no_grad():
        last = model(x)[:, -1]
    ld = last.gather(1, ans[:, None]) - last.gather(1, wrong[:, None])
    return (last.argmax(-1) == ans).float().mean().item(), ld.mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--name", default="interp-lookup")
    ap.add_argument("--reuse", action="store_true", help="keep the zoo weights; rewrite pairs and task.json")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add sync cost
    if args.reuse:
        from edgewise.models import load_model
        model = load_model(args.name, device="cpu")
    else:
        model = train(args.steps)
        save_model(model, args.name, "tools/train_interp.py")
    records = make_pairs()
    acc, ld = accuracy(model, records)
    print(f"{args.name}: accuracy {acc:.3f}, mean logit diff {ld:.3f} on {len(records)} pairs ({time.time() - t0:.0f} s)")
    evidence = measure(model, records)
    print(evidence)
    save_task(args.name, records, {
        "metric": "logit_diff",
        "description": "SIIT-trained lookup: BOS d (k1,v1) … (k4,v4) q → 10·d + v_j where k_j = q; corrupted = "
                       "an independent prompt (resampling), wrong_answer its answer",
        "circuit": CIRCUIT,
        "circuit_source": "trained in by strict interchange-intervention training (tools/train_interp.py, "
                          "tools/siit.py)",
        "alignment": ALIGN, **evidence, "accuracy": round(acc, 4), "mean_logit_diff": round(ld, 4)})


def measure(model, records) -> dict:
    """How true the trained-in truth is, measured with edgewise on the shipped pairs: faithfulness of
    the circuit, and the exact (brute-force) effect of every edge alone, in and outside the circuit."""
    import edgewise as ew

    pairs = ew.PromptPairs.from_records(model, records)
    faith = ew.evaluate(model, pairs, CIRCUIT, metric="logit_diff")
    res = ew.attribute(model, pairs, method="exact", metric="logit_diff")
    inside = res.graph.mask_from_edges(CIRCUIT)[res.graph.edge_mask]
    gap = faith.metric_clean - faith.metric_corrupted
    out = {"faithfulness": round(faith.normalized, 3),
           "mean_logit_diff_corrupted": round(faith.metric_corrupted, 4),
           "exact_min_in_circuit": round(float(res.scores[inside].abs().min() / gap), 3),
           "exact_max_outside": round(float(res.scores[~inside].abs().max() / gap), 4),
           "roc_auc": {}}
    for method in ("exact", "eap", "eap-ig-inputs", "eap-ig-activations", "clean-corrupted"):
        scores = res.scores if method == "exact" else ew.attribute(model, pairs, method=method).scores
        out["roc_auc"][method] = round(ew.roc_auc(scores, inside)[2], 3)
    return out


if __name__ == "__main__":
    main()

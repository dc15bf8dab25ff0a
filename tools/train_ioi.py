"""Train `toy-ioi`: a 4-layer transformer on indirect-object sentences, and write its ABC prompt pairs.

    .venv/bin/python tools/train_ioi.py            # seeded, CPU, one thread, a few minutes

Data (tools/ioi_data.py): fourteen IOI templates in both name orders (ABBA, BABA), 40 names, LM loss
on every token plus the indirect-object token; a share of scrambled sequences where only the repeated
token says which name is the subject. Prompt pairs: 200 held-out sentences (100 per order), each
corrupted by the ABC distribution (all three names replaced). The role analysis and the shipped
circuit come from tools/ioi_roles.py, run after this script.
"""
from __future__ import annotations

import argparse
import random
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import ioi_data as D
from zoo_io import ZOO, save_model, save_task

SEED = 0


def make_config(d_vocab: int, n_layers: int, attn_only: bool) -> HookedTransformerConfig:
    return HookedTransformerConfig(
        model_name="toy-ioi", n_layers=n_layers, n_heads=4, d_model=64, d_head=16,
        d_mlp=None if attn_only else 128, attn_only=attn_only, n_ctx=24, d_vocab=d_vocab, act_fn="gelu",
        normalization_type="LN", positional_embedding_type="standard", default_prepend_bos=True, seed=SEED,
        device="cpu")


def encode(tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS + words, right-padded: ids [B, P] and each row's last real position."""
    ids = [[tok.bos_token_id] + tok(t)["input_ids"] for t in texts]
    P = max(map(len, ids))
    out = torch.full((len(ids), P), tok.pad_token_id, dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, : len(row)] = torch.tensor(row)
    return out, torch.tensor([len(r) - 1 for r in ids])


def training_batch(rng: random.Random, tok, n: int, mix: float, copy: float = 0.0):
    """ids [n, P], last [n], and which rows are template sentences (LM loss) vs scrambled (answer only)."""
    texts, lm = [], []
    for _ in range(n):
        r = rng.random()
        if r < mix + copy:
            text, y = D.scrambled(rng) if r < mix else D.single(rng)
            texts.append(text + " " + y)
            lm.append(False)
        else:
            rec = D.ioi(rng)
            texts.append(rec["text"] + " " + rec["io"])
            lm.append(True)
    ids, last = encode(tok, texts)
    return ids, last, torch.tensor(lm)


def train(tok, steps: int, n_layers: int, attn_only: bool, mix: float, copy: float = 0.0, batch_size: int = 64,
          lr: float = 2e-3) -> HookedTransformer:
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    model = HookedTransformer(make_config(len(tok), n_layers, attn_only))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rows = torch.arange(batch_size)
    for step in range(steps):
        ids, last, lm = training_batch(rng, tok, batch_size, mix, copy)
        logp = model(ids)[:, :-1].log_softmax(-1)
        nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]           # [B, P-1]: position p predicts p+1
        real = (torch.arange(ids.shape[1] - 1)[None] < last[:, None]) & lm[:, None]
        answer_nll = nll[rows, last - 1]                            # the indirect object (or scrambled target)
        loss = nll[real].mean() + 2 * answer_nll.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  answer loss {answer_nll.mean().item():.4f}", flush=True)
    return model.eval()


def evaluate(model, tok, records: list[dict]) -> dict:
    """Accuracy (argmax over the vocabulary is IO) and mean logit(IO) − logit(S), clean and corrupted."""
    io = torch.tensor([tok.convert_tokens_to_ids(r["answer"].strip()) for r in records])
    s = torch.tensor([tok.convert_tokens_to_ids(r["wrong_answer"].strip()) for r in records])
    out = {}
    for key in ("clean", "corrupted"):
        ids, last = encode(tok, [r[key] for r in records])
        with torch.no_grad():
            logits = model(ids)[torch.arange(len(records)), last]
        diff = logits.gather(1, io[:, None])[:, 0] - logits.gather(1, s[:, None])[:, 0]
        out[key] = {"accuracy": (logits.argmax(-1) == io).float().mean().item(), "logit_diff": diff.mean().item()}
    return out


def make_pairs(n: int = 200, seed: int = 10_000) -> list[dict]:
    """n ABC pairs, half ABBA and half BABA, from a generator seeded apart from training."""
    rng = random.Random(seed)
    pairs, want = [], {"ABBA": n // 2, "BABA": n - n // 2}
    while len(pairs) < n:
        rec = D.abc_pair(rng)
        if want[rec["order"]] > 0:
            want[rec["order"]] -= 1
            pairs.append(rec)
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="toy-ioi", help="zoo folder to write")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--attn-only", action="store_true")
    ap.add_argument("--mix", type=float, default=0.3, help="share of scrambled sequences in training")
    ap.add_argument("--copy", type=float, default=0.0, help="share of single-name copying sequences in training")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add sync cost (100× slower on a busy CPU)
    tok = D.build_tokenizer()
    model = train(tok, args.steps, args.layers, args.attn_only, args.mix, args.copy)
    records = make_pairs()
    ev = evaluate(model, tok, records)
    print(f"toy-ioi: {ev} on {len(records)} held-out ABC pairs ({time.time() - t0:.0f} s)")
    out = save_model(model, args.name, "tools/train_ioi.py")
    tok.save_pretrained(str(out))
    save_task(args.name, [{k: r[k] for k in ("clean", "corrupted", "answer", "wrong_answer")} for r in records], {
        "metric": "logit_diff",
        "description": "indirect object identification: 'When Mary and John went to the store, John gave a drink "
                       "to' → ' Mary', both name orders; corrupted prompts replace all three names (ABC)",
        "circuit": None,
        "accuracy": round(ev["clean"]["accuracy"], 4), "mean_logit_diff": round(ev["clean"]["logit_diff"], 4),
        "mean_logit_diff_corrupted": round(ev["corrupted"]["logit_diff"], 4)})
    assert (ZOO / args.name / "tokenizer.json").exists()


if __name__ == "__main__":
    main()

"""Train `toy-ioi`: a small transformer (LayerNorm, GELU MLPs) on templated indirect-object sentences.

    .venv/bin/python tools/train_ioi.py        # seeded, CPU, a few minutes

"When Mary and John went to the store, John gave a drink to" → " Mary". Names come in both orders
(ABBA and BABA) across seven templates. The tokenizer is word-level (HF `tokenizers` WordLevel,
whitespace + punctuation split, no BOS), saved beside the weights. Prompt pairs: the corrupted
prompt replaces the repeated name (S2) by a third name (the IOI paper's ABC distribution);
answer = the indirect object, wrong_answer = the subject.
"""
from __future__ import annotations

import argparse
import random
import time

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from zoo_io import ZOO, save_model, save_task

SEED = 0
NAMES = ["Mary", "John", "Alice", "Bob", "Kate", "Tom", "Sarah", "James", "Emma", "David", "Laura", "Mark",
         "Anna", "Paul", "Lisa", "Peter", "Rose", "Jack", "Claire", "Sam", "Julia", "Max", "Grace", "Leo"]
PLACES = ["store", "park", "school", "office", "garden", "station", "beach", "market"]
OBJECTS = ["drink", "book", "ball", "letter", "gift", "key", "flower", "bag"]
TEMPLATES = [
    "When {A} and {B} went to the {P}, {S} gave a {O} to",
    "When {A} and {B} got a {O} at the {P}, {S} decided to give it to",
    "Then, {A} and {B} went to the {P}. {S} gave a {O} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "After {A} and {B} went to the {P}, {S} gave a {O} to",
    "While {A} and {B} were working at the {P}, {S} gave a {O} to",
    "Friends {A} and {B} found a {O} at the {P}. {S} gave it to",
]
SPECIAL = ["<pad>", "<unk>", "<eos>"]


def build_tokenizer() -> PreTrainedTokenizerFast:
    words = []
    for t in TEMPLATES:
        words += t.replace(",", " , ").replace(".", " . ").split()
    words = [w for w in words if not w.startswith("{")] + NAMES + PLACES + OBJECTS
    vocab = {w: i for i, w in enumerate(SPECIAL + sorted(set(words)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation; " Mary" → ["Mary"]
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")


def sample(rng: random.Random, corrupt: bool = False) -> dict:
    """One IOI sentence: IO and S names, both orders; with `corrupt`, S2 is a third name C."""
    io, s, c = rng.sample(NAMES, 3)
    a, b = (io, s) if rng.random() < 0.5 else (s, io)
    fill = dict(A=a, B=b, P=rng.choice(PLACES), O=rng.choice(OBJECTS))
    t = rng.choice(TEMPLATES)
    rec = {"clean": t.format(S=s, **fill), "answer": " " + io, "wrong_answer": " " + s}
    if corrupt:
        rec["corrupted"] = t.format(S=c, **fill)
    return rec


def make_config(d_vocab: int) -> HookedTransformerConfig:
    return HookedTransformerConfig(
        model_name="toy-ioi", n_layers=3, n_heads=4, d_model=64, d_head=16, d_mlp=256, n_ctx=32, d_vocab=d_vocab,
        act_fn="gelu", normalization_type="LN", positional_embedding_type="standard", default_prepend_bos=False,
        seed=SEED, device="cpu")


def encode(tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, P] and each row's last real position."""
    ids = [tok(t)["input_ids"] for t in texts]
    P = max(map(len, ids))
    out = torch.full((len(ids), P), tok.pad_token_id, dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, : len(row)] = torch.tensor(row)
    return out, torch.tensor([len(r) - 1 for r in ids])


def train(tok, steps: int = 3000, batch_size: int = 64, lr: float = 2e-3) -> HookedTransformer:
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    model = HookedTransformer(make_config(len(tok)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        recs = [sample(rng) for _ in range(batch_size)]
        ids, last = encode(tok, [r["clean"] + r["answer"] for r in recs])
        logits = model(ids)
        logp = logits[:, :-1].log_softmax(-1)
        nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
        real = torch.arange(ids.shape[1] - 1)[None] < last[:, None]
        answer_nll = nll[torch.arange(batch_size), last - 1]  # the indirect object, the task's token
        loss = nll[real].mean() + answer_nll.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  answer loss {answer_nll.mean().item():.4f}", flush=True)
    return model.eval()


def evaluate(model, tok, records: list[dict]) -> tuple[float, float]:
    """Accuracy (argmax over the whole vocabulary is the IO) and mean logit(IO) − logit(S)."""
    ids, last = encode(tok, [r["clean"] for r in records])
    io = torch.tensor([tok.convert_tokens_to_ids(r["answer"].strip()) for r in records])
    s = torch.tensor([tok.convert_tokens_to_ids(r["wrong_answer"].strip()) for r in records])
    with torch.no_grad():
        logits = model(ids)[torch.arange(len(records)), last]
    acc = (logits.argmax(-1) == io).float().mean().item()
    ld = (logits.gather(1, io[:, None]) - logits.gather(1, s[:, None])).mean().item()
    return acc, ld


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="toy-ioi", help="zoo folder to write")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add sync cost (100× slower on a busy CPU)
    tok = build_tokenizer()
    model = train(tok)
    records = [sample(random.Random(10_000 + i), corrupt=True) for i in range(200)]
    acc, ld = evaluate(model, tok, records)
    print(f"toy-ioi: accuracy {acc:.3f}, mean logit diff {ld:.3f} on {len(records)} held-out pairs "
          f"({time.time() - t0:.0f} s)")
    out = save_model(model, args.name, "tools/train_ioi.py")
    tok.save_pretrained(str(out))
    save_task(args.name, [{k: r[k] for k in ("clean", "corrupted", "answer", "wrong_answer")} for r in records], {
        "metric": "logit_diff",
        "description": "indirect object identification: 'When Mary and John went to the store, John gave a drink "
                       "to' → ' Mary'; corrupted prompts replace the repeated name by a third name",
        "circuit": None,
        "accuracy": round(acc, 4), "mean_logit_diff": round(ld, 4)})
    assert (ZOO / args.name / "tokenizer.json").exists()


if __name__ == "__main__":
    main()

"""GPT-2 small's published circuits in edgewise edge names, and generators of their prompt pairs.

For users with GPT-2 and a network (the weights are not bundled). The circuits follow ACDC's
ground-truth definitions (Conmy et al. 2023: acdc/ioi/utils.py `get_ioi_true_edges`,
acdc/greaterthan/utils.py `get_greaterthan_true_edges`), which build edge sets from the head
classes of Wang et al. 2022 (IOI) and Hanna et al. 2023 (Greater-Than). ACDC's input node is
`blocks.0.hook_resid_pre`, the same as edgewise's `input`; its q/k/v-internal edges have no
counterpart here (edgewise edges always cross the residual stream).

    from edgewise.zoo.gpt2 import ioi_circuit, ioi_pairs
    pairs = ew.PromptPairs.from_records(model, ioi_pairs(200))
"""
from __future__ import annotations

import random

N_LAYERS = 12
IOI_HEADS = {
    "name mover": [(9, 9), (10, 0), (9, 6)],
    "backup name mover": [(10, 10), (10, 6), (10, 2), (10, 1), (11, 2), (9, 7), (9, 0), (11, 9)],
    "negative": [(10, 7), (11, 10)],
    "s2 inhibition": [(7, 3), (7, 9), (8, 6), (8, 10)],
    "induction": [(5, 5), (5, 8), (5, 9), (6, 9)],
    "duplicate token": [(0, 1), (0, 10), (3, 0)],
    "previous token": [(2, 2), (4, 11)],
}
# (source class, destination class, input slots); INPUT = the embedding and every MLP,
# OUTPUT = the logits and every later MLP
IOI_CONNECTIONS = [
    ("INPUT", "previous token", "qkv"), ("INPUT", "duplicate token", "qkv"), ("INPUT", "s2 inhibition", "q"),
    ("INPUT", "negative", "kv"), ("INPUT", "name mover", "kv"), ("INPUT", "backup name mover", "kv"),
    ("previous token", "induction", "kv"), ("induction", "s2 inhibition", "kv"),
    ("duplicate token", "s2 inhibition", "kv"), ("s2 inhibition", "negative", "q"),
    ("s2 inhibition", "name mover", "q"), ("s2 inhibition", "backup name mover", "q"),
    ("negative", "OUTPUT", ""), ("name mover", "OUTPUT", ""), ("backup name mover", "OUTPUT", ""),
]


def _head(layer: int, head: int) -> str:
    return f"a{layer}.h{head}"


def ioi_circuit() -> list[str]:
    """ACDC's IOI ground truth: the MLPs stay fully connected to each other, to the input and to the
    logits, and to and from every circuit head; among heads, only the class connections above."""
    heads = [h for group in IOI_HEADS.values() for h in group]
    edges: set[str] = set()
    # what survives ACDC's masking of the non-circuit heads' q/k/v
    for j in range(N_LAYERS):
        edges |= {f"input->m{j}", f"m{j}->logits"} | {f"m{i}->m{j}" for i in range(j)}
    edges.add("input->logits")
    for layer, h in heads:
        edges |= {f"{_head(layer, h)}->m{j}" for j in range(layer, N_LAYERS)}
        edges |= {f"m{i}->{_head(layer, h)}<{x}>" for i in range(layer) for x in "qkv"}
    for src, dst, slots in IOI_CONNECTIONS:
        sources = [(-1, "input")] + [(i, f"m{i}") for i in range(N_LAYERS)] if src == "INPUT" else \
            [(layer, _head(layer, h)) for layer, h in IOI_HEADS[src]]
        for ls, s in sources:
            if dst == "OUTPUT":
                edges.add(f"{s}->logits")
                edges |= {f"{s}->m{j}" for j in range(ls + 1, N_LAYERS)}
                continue
            for ld, h in IOI_HEADS[dst]:
                if ld > ls:
                    edges |= {f"{s}->{_head(ld, h)}<{x}>" for x in slots}
    return sorted(edges)


GREATERTHAN_NODES = {
    "0305": [(0, 3), (0, 5)], "01": [(0, 1)], "MEARLY": [(0, None), (1, None), (2, None), (3, None)],
    "AMID": [(5, 5), (6, 1), (6, 9), (7, 10), (8, 11), (9, 1)], "MLATE": [(8, None), (9, None), (10, None), (11, None)],
}
GREATERTHAN_CONNECTIONS = [("01", "MEARLY"), ("01", "AMID"), ("0305", "AMID"), ("MEARLY", "AMID"), ("AMID", "MLATE")]


def _name(layer: int, head: int | None) -> str:
    return f"m{layer}" if head is None else _head(layer, head)


def _slots(layer: int, head: int | None) -> list[str]:
    return [f"m{layer}"] if head is None else [f"{_head(layer, head)}<{x}>" for x in "qkv"]


def greaterthan_circuit() -> list[str]:
    """ACDC's Greater-Than ground truth (Hanna et al. 2023's circuit)."""
    g = GREATERTHAN_NODES
    edges: set[str] = set()
    for group in ("0305", "01", "MEARLY"):
        for node in g[group]:
            edges |= {f"input->{s}" for s in _slots(*node)}
    for group in ("AMID", "MLATE"):
        edges |= {f"{_name(*node)}->logits" for node in g[group]}
    for group in ("MEARLY", "MLATE"):  # the MLPs of a group are interconnected
        edges |= {f"m{i}->m{j}" for i, _ in g[group] for j, _ in g[group] if i < j}
    for g1, g2 in GREATERTHAN_CONNECTIONS:
        for l1, h1 in g[g1]:
            for l2, h2 in g[g2]:
                if l1 < l2 or (l1 == l2 and h1 is not None and h2 is None):  # a head feeds its layer's MLP
                    edges |= {f"{_name(l1, h1)}->{s}" for s in _slots(l2, h2)}
    last_amid = max(layer for layer, _ in g["AMID"])
    edges |= {f"m{i}->m{j}" for i in range(last_amid) for j in range(i + 1, last_amid)}
    edges |= {f"m{i}->{_head(layer, h)}<q>" for layer, h in g["AMID"] for i in range(layer)}
    return sorted(edges)


# ---------------------------------------------------------------- prompt pairs (text; GPT-2 tokenizes them)
NAMES = ["Mary", "John", "Tom", "James", "David", "Michael", "Paul", "Mark", "Sarah", "Lisa", "Kevin", "Eric",
         "Daniel", "Ryan", "Adam", "Jason", "Brian", "Scott", "Laura", "Amy", "Emily", "Rachel", "Kelly", "Anna"]
PLACES = ["store", "garden", "restaurant", "school", "hospital", "office", "house", "station"]
OBJECTS = ["ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack"]
IOI_TEMPLATES = [
    "Then, {A} and {B} went to the {P}. {S} gave a {O} to",
    "When {A} and {B} got a {O} at the {P}, {S} decided to give it to",
    "After {A} and {B} went to the {P}, {S} gave a {O} to",
    "While {A} and {B} were working at the {P}, {S} gave a {O} to",
]


def _valid(model, rec: dict) -> bool:
    """Does the model's tokenizer give equal-length prompts and single-token answers?"""
    from ..data import PairsError, PromptPairs
    try:
        PromptPairs.from_records(model, [rec])
        return True
    except PairsError:
        return False


def _draw(make, n: int, seed: int, model) -> list[dict]:
    """n records from make(rng); with a model, only those its tokenizer accepts."""
    rng, out = random.Random(seed), []
    for _ in range(100 * n):
        if len(out) == n:
            break
        rec = make(rng)
        if model is None or _valid(model, rec):
            out.append(rec)
    return out


def ioi_pairs(n: int = 200, seed: int = 0, model=None) -> list[dict]:
    """IOI prompts (both name orders); corrupted = the repeated name replaced by a third name (ABC).
    With `model`, only pairs whose names are single tokens for its tokenizer are kept."""
    return _draw(_ioi_record, n, seed, model)


def _ioi_record(rng: random.Random) -> dict:
    io, s, c = rng.sample(NAMES, 3)
    a, b = (io, s) if rng.random() < 0.5 else (s, io)
    fill = dict(A=a, B=b, P=rng.choice(PLACES), O=rng.choice(OBJECTS))
    t = rng.choice(IOI_TEMPLATES)
    return {"clean": t.format(S=s, **fill), "corrupted": t.format(S=c, **fill),
            "answer": " " + io, "wrong_answer": " " + s}


GT_NOUNS = ["war", "dynasty", "expedition", "siege", "treaty", "reign", "voyage", "rivalry", "project", "trial"]


def greaterthan_pairs(n: int = 200, seed: int = 0, model=None) -> list[dict]:
    """"The war lasted from the year 1732 to 17" → a year after 32; corrupted year ends in 01
    (Hanna et al. 2023). answer = the year's own two digits + 1, wrong_answer = the two digits − 1:
    logit_diff then reads the paper's probability-difference metric at its boundary. With `model`,
    only years its tokenizer splits like the corrupted one (GPT-2: " 17" + "32") are kept."""
    return _draw(_greaterthan_record, n, seed, model)


def _greaterthan_record(rng: random.Random) -> dict:
    century, yy = rng.randint(11, 17), rng.randint(2, 98)
    text, noun = "The {noun} lasted from the year {c}{yy:02d} to {c}", rng.choice(GT_NOUNS)
    return {"clean": text.format(noun=noun, c=century, yy=yy), "corrupted": text.format(noun=noun, c=century, yy=1),
            "answer": f"{yy + 1:02d}", "wrong_answer": f"{yy - 1:02d}"}

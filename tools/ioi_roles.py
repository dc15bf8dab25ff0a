"""Which heads of toy-ioi play which IOI role: attention patterns and path patching, with edgewise.

    .venv/bin/python tools/ioi_roles.py [--model toy-ioi] [--write]

Attention (clean prompts, mean over the 200 pairs): `dup` = from S2 to S1 (duplicate-token heads);
`s2_io` = from S2 to IO; `end_s2` = from the last token (END) to S2 (S-inhibition heads' pattern);
`end_io` / `end_s1` = from END to IO / S1 (name movers attend to IO, not S1).

Path patching = edgewise's exact edge patching under the ABC corruption: the score of u→v is the
change in the metric when only v's input from u carries u's corrupted output, all else clean
(Wang et al.'s path patching from sender u to receiver v). `direct` = score of h→logits with
logit(IO) − logit(S); `to_io` / `to_s` = the same with logit(IO) − logit(N) / logit(S) − logit(N),
N a name in neither prompt: whether a head raises IO or lowers S.

Roles, and the circuit assembled from them (`role_circuit`), go into task.json with --write;
docs/zoo.md quotes the numbers this prints.
"""
from __future__ import annotations

import argparse
import json
import random

import torch

import edgewise as ew
from ioi_data import NAMES
from zoo_io import ZOO

MOVER_END_S2, FINDER_S2_IO = 0.75, 0.4  # attention thresholds for the two roles (see docs/zoo.md)


def positions(pairs) -> dict[str, torch.Tensor]:
    """IO, S1, S2, END token positions of every clean prompt ([n] each)."""
    out = {"io": [], "s1": [], "s2": [], "end": []}
    for toks, io, s in zip(pairs.clean, pairs.answer, pairs.wrong_answer):
        s_at = [i for i, t in enumerate(toks) if t == s]
        out["io"].append(toks.index(io))
        out["s1"].append(s_at[0])
        out["s2"].append(s_at[1])
        out["end"].append(len(toks) - 1)
    return {k: torch.tensor(v) for k, v in out.items()}


def attention_scores(model, pairs) -> dict[str, torch.Tensor]:
    """[n_layers, n_heads] mean attention for each pattern of the module docstring."""
    pos = positions(pairs)
    pats = {"dup": ("s2", "s1"), "s2_io": ("s2", "io"), "end_s2": ("end", "s2"), "end_io": ("end", "io"),
            "end_s1": ("end", "s1")}
    sums = {k: torch.zeros(model.cfg.n_layers, model.cfg.n_heads) for k in pats}
    for batch in pairs.batches(64):
        idx = batch.index.cpu()
        rows = torch.arange(len(idx))
        with torch.no_grad():
            _, cache = model.run_with_cache(batch.clean, names_filter=lambda n: n.endswith("hook_pattern"))
        for layer in range(model.cfg.n_layers):
            a = cache["pattern", layer]  # [B, H, query, key]
            for k, (q, key) in pats.items():
                sums[k][layer] += a[rows, :, pos[q][idx], pos[key][idx]].sum(0)
    return {k: v / len(pairs) for k, v in sums.items()}


def direct_effects(model, records) -> dict[str, torch.Tensor]:
    """[n_layers, n_heads] exact score of each h→logits edge (patched alone, by ew.evaluate on the
    graph minus that edge) for three logit differences (see the module docstring)."""
    rng = random.Random(0)
    graph = ew.Graph.from_model(model)
    out = {}
    for key, (a, b) in {"direct": ("answer", "wrong_answer"), "to_io": ("answer", None),
                        "to_s": ("wrong_answer", None)}.items():
        recs = []
        for r in records:
            used = set((r["clean"] + " " + r["corrupted"]).replace(",", " ").replace(".", " ").split())
            other = " " + rng.choice([n for n in NAMES if n not in used])
            recs.append({**r, "answer": r[a], "wrong_answer": r[b] if b else other})
        pairs = ew.PromptPairs.from_records(model, recs)
        scores = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
        for L in range(model.cfg.n_layers):
            for h in range(model.cfg.n_heads):
                keep = graph.edge_mask & ~graph.mask_from_edges([f"a{L}.h{h}->logits"])
                f = ew.evaluate(model, pairs, keep, metric="logit_diff")
                scores[L, h] = f.metric_circuit - f.metric_clean
        out[key] = scores
        print(f"direct effects with {key}: done", flush=True)
    return out


def roles(att: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Movers: END→S2 attention ≥ 0.75 (layers ≥ 1); IO finders: layer-0 heads with S2→IO ≥ 0.4 and more
    than twice their S2→S1 (they pick the other name, not the duplicate)."""
    H = att["end_s2"].shape[1]
    heads = lambda m: [f"a{i // H}.h{i % H}" for i in m.flatten().nonzero()[:, 0].tolist()]  # noqa: E731
    movers = att["end_s2"] >= MOVER_END_S2
    movers[0] = False
    finders = torch.zeros_like(movers)
    finders[0] = (att["s2_io"][0] >= FINDER_S2_IO) & (att["s2_io"][0] > 2 * att["dup"][0])
    return {"io_finders": heads(finders), "movers": heads(movers)}


def role_circuit(model, r: dict[str, list[str]]) -> list[str]:
    """IO finders read the tokens (q, k, v) and write into m0 at S2 (with the token itself);
    each mover's value reads what upstream MLPs and the embedding hold at S2, and it writes to the
    logits and to every later MLP; the MLPs feed each other and the logits."""
    mlps = [f"m{L}" for L in range(model.cfg.n_layers)]
    layer = lambda node: int(node[1])  # noqa: E731  ("a2.h3" → 2, "m1" → 1)
    e = [f"input->{h}<{x}>" for h in r["io_finders"] for x in "qkv"] + ["input->m0"]
    e += [f"{h}->m0" for h in r["io_finders"]]
    for h in r["movers"]:
        e += [f"{s}->{h}<v>" for s in ["input"] + [m for m in mlps if layer(m) < layer(h)]]
        e += [f"{h}->logits"] + [f"{h}->{m}" for m in mlps if layer(m) >= layer(h)]
    e += [f"{a}->{b}" for a in mlps for b in mlps if layer(a) < layer(b)] + [f"{m}->logits" for m in mlps]
    return sorted(set(e))


def table(scores: dict[str, torch.Tensor], heads: list[str]) -> str:
    keys = [k for k in scores if not k.startswith("_")]
    H = scores[keys[0]].shape[1]
    lines = ["| head | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name in heads:
        L, h = int(name[1]), int(name.split(".h")[1])
        assert h < H
        lines.append(f"| {name} | " + " | ".join(f"{float(scores[k][L, h]):.2f}" for k in keys) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="toy-ioi")
    ap.add_argument("--write", action="store_true", help="write the role circuit and its evidence into task.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = ew.load_task(args.model)
    model, pairs = task.hooked_model, task.pairs
    att = attention_scores(model, pairs)
    eff = direct_effects(model, pairs.records)
    res = ew.attribute(model, pairs, method="exact", metric="logit_diff",
                       progress=lambda f: print(f"exact patching {f:.0%}", end="\r", flush=True))
    heads = [f"a{L}.h{h}" for L in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    print(table({**att, **eff}, heads))
    r = roles(att)
    circuit = role_circuit(model, r)
    faith = ew.evaluate(model, pairs, circuit, metric="logit_diff")
    g = res.graph
    truth = g.mask_from_edges(circuit)[g.edge_mask]
    aucs = {"exact": ew.roc_auc(res.scores, truth)[2]}
    for method in ("eap", "eap-ig-inputs"):
        aucs[method] = ew.roc_auc(ew.attribute(model, pairs, method=method).scores, truth)[2]
    top = res.ranking().tolist()
    print("roles:", r)
    print("top exact edges:", [(res.edges[i], round(float(res.scores[i]), 2)) for i in top[:15]])
    print(f"clean {faith.metric_clean:.3f}  corrupted {faith.metric_corrupted:.3f}; role circuit: {len(circuit)} "
          f"edges, faithfulness {faith.normalized:.3f}; ROC-AUC against it {aucs}")
    for k in (20, 40, 67, 100):
        print(f"exact top-{k}: faithfulness {ew.evaluate(model, pairs, res.circuit(top_k=k)).normalized:.3f}")
    if args.write:
        path = ZOO / args.model / "task.json"
        spec = json.loads(path.read_text())
        spec.update({"circuit": circuit, "roles": r, "faithfulness": round(faith.normalized, 3),
                     "circuit_source": "roles from attention patterns and path patching (tools/ioi_roles.py, "
                                       "docs/zoo.md): IO finders at S2 → m0 → movers END→S2 copying IO → logits",
                     "roc_auc": {k: round(v, 3) for k, v in aucs.items()}})
        path.write_text(json.dumps(spec, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""EAP, its variants, exact patching and ACDC on every bundled task: the paper's comparison, here.

For each task and ablation: edge ROC-AUC of each method's ranking against the task's known
circuits, normalized faithfulness of its top-k circuit at a few k, and its wall time. ACDC's
ranking is its τ sweep (an edge scores the largest τ at which ACDC keeps it, `acdc_sweep`).
Writes docs/results.md. Run: `make results`, or `.venv/bin/python bench/compare_methods.py`.
Every number but the wall times is deterministic (same code, same zoo, same table).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import edgewise as ew
from edgewise.acdc import acdc_sweep
from edgewise.tasks import load_task

# tiny models on a shared machine: more threads only add synchronisation (measured up to 30× slower)
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["eap", "eap-ig-inputs", "eap-ig-activations", "clean-corrupted", "exact", "acdc"]
TRUTH_NAMES = {"circuit": "weights", "circuit_acdc": "ACDC's", "circuit_official": "official"}  # tracr truths
# ablations compared, top-k sizes for faithfulness, pairs used (None = all)
TASKS = {
    "tracr-reverse": dict(ablations=["resample", "zero"], ks=[2, 5, 9, 13, 20], n_pairs=None),
    "tracr-proportion": dict(ablations=["resample", "zero"], ks=[1, 2, 3, 5, 10], n_pairs=None),
    "toy-induction": dict(ablations=["resample", "zero"], ks=[1, 3, 7, 10, 15], n_pairs=None),
    "toy-ioi": dict(ablations=["resample"], ks=[5, 10, 20, 50, 100], n_pairs=50),
}
PAPER_AUC = {"tracr-proportion": 0.600, "tracr-reverse": 0.200}  # ACDC paper, edge AUC, resample ablation
BATCH = 256
IG_STEPS = 5


def run_method(model, pairs, metric, method, ablation):
    """(edge scores for ranking, scores for top-k, seconds, note). ACDC's top-k breaks the ties of its
    τ sweep by the |Δmetric| each edge caused in the lowest-τ run."""
    t0 = time.perf_counter()
    if method == "acdc":
        sweep = acdc_sweep(model, pairs, metric, ablation=ablation, batch_size=BATCH)
        seconds = time.perf_counter() - t0
        scores = sweep.scores
        tie = sweep.runs[0].scores
        order = sorted(range(len(scores)), key=lambda e: (-float(scores[e]), -float(tie[e]), e))
        ranked = torch.zeros(len(scores), dtype=torch.float64)
        ranked[order] = torch.arange(len(scores), 0, -1, dtype=torch.float64)
        note = f"{len(sweep.taus)} τ, {sum(r.n_forward for r in sweep.runs)} tries"
        return scores, ranked, seconds, note
    res = ew.attribute(model, pairs, method=method, metric=metric, batch_size=BATCH, ablation=ablation,
                       ig_steps=IG_STEPS)
    return res.scores, res.scores, time.perf_counter() - t0, ""


def run_task(name, spec, log):
    task = load_task(name)
    model, pairs = task.hooked_model, task.pairs
    if spec["n_pairs"] and spec["n_pairs"] < len(pairs):
        pairs = pairs.subset(range(spec["n_pairs"]))
    g = ew.Graph.from_model(model)
    truths = {k: g.mask_from_edges(v)[g.edge_mask] for k, v in task.circuits.items()}
    with torch.no_grad():  # warm up, so the first method timed pays no one-off costs
        model(torch.tensor([pairs.clean[0]]))
    rows = []
    for ablation in spec["ablations"]:
        for method in METHODS:
            scores, ranked, seconds, note = run_method(model, pairs, task.metric, method, ablation)
            aucs = {k: ew.roc_auc(scores, t)[2] for k, t in truths.items()}
            curve = ew.faithfulness_curve(model, pairs, ranked, task.metric, ablation, ks=spec["ks"],
                                          batch_size=BATCH)
            row = dict(task=name, ablation=ablation, method=method, seconds=seconds, note=note, auc=aucs,
                       faith={c["k"]: c["normalized"] for c in curve},
                       rank={k: _key_rank(g, ranked, e) for k, e in [("key", task.spec.get("key_edge"))] if e})
            rows.append(row)
            log(f"{name:17s} {ablation:8s} {method:19s} {seconds:7.2f}s  "
                + " ".join(f"{truth_name(name, k)}={v:.3f}" for k, v in aucs.items()))
    info = dict(name=name, n_pairs=len(pairs), n_pairs_all=len(task.pairs), n_edges=g.n_edges, metric=task.metric,
                truths={k: len(v) for k, v in task.circuits.items()}, ks=spec["ks"], ablations=spec["ablations"],
                key_edge=task.spec.get("key_edge"))
    return info, rows


def _key_rank(g, scores, edge):
    """1-based rank of `edge` by |score| (ties: graph order, as Circuit.from_scores)."""
    order = torch.argsort(scores.abs(), descending=True, stable=True).tolist()
    return order.index(g.edge_position[edge]) + 1


# ---------------------------------------------------------------- the report
def fmt(x, nd=3):
    return "–" if x is None or x != x else f"{x:.{nd}f}"


def truth_name(task, key):
    return TRUTH_NAMES[key] if task.startswith("tracr") else "expected"


def auc_table(info, rows):
    keys = list(info["truths"])
    head = "| ablation | method | " + " | ".join(f"AUC vs {truth_name(info['name'], k)} ({info['truths'][k]})"
                                                for k in keys) \
        + (" | key-edge rank" if info["key_edge"] else "") + " | time (s) |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [fmt(r["auc"][k]) for k in keys] + ([str(r["rank"]["key"])] if info["key_edge"] else [])
        t = f"{r['seconds']:.2f}" + (f" ({r['note']})" if r["note"] else "")
        out.append(f"| {r['ablation']} | {r['method']} | " + " | ".join(cells) + f" | {t} |")
    return out


def faith_table(info, rows):
    head = "| ablation | method | " + " | ".join(f"k={k}" for k in info["ks"]) + " |"
    out = [head, "|" + "---|" * (len(info["ks"]) + 2)]
    for r in rows:
        out.append(f"| {r['ablation']} | {r['method']} | " + " | ".join(fmt(r["faith"][k], 2) for k in info["ks"]) + " |")
    return out


def pick(rows, task, ablation, method):
    return next(r for r in rows if r["task"] == task and r["ablation"] == ablation and r["method"] == method)


def summary(infos, rows):
    """The paragraphs that read the tables; every number is filled in from this run."""
    def auc(task, abl, method, truth="circuit"):
        return fmt(pick(rows, task, abl, method)["auc"][truth])

    def faith(task, abl, method, k):
        return fmt(pick(rows, task, abl, method)["faith"][k], 2)

    def rank(task, abl, method):
        return pick(rows, task, abl, method)["rank"]["key"]

    def sec(task, method):
        return pick(rows, task, "resample", method)["seconds"]

    rev, prop, ind, ioi = "tracr-reverse", "tracr-proportion", "toy-induction", "toy-ioi"
    k_ioi = infos[ioi]["ks"]
    ratios = [sec(t, "acdc") / sec(t, "exact") for t in infos]
    return [
        "## Reading the numbers",
        "",
        "**Where EAP wins.**",
        f"- *Cost.* EAP scores all {infos[ioi]['n_edges']} edges of toy-ioi in {sec(ioi, 'eap'):.2f} s; exact "
        f"patching takes {sec(ioi, 'exact'):.1f} s and ACDC's sweep {sec(ioi, 'acdc'):.1f} s on the same "
        f"{infos[ioi]['n_pairs']} pairs. EAP's cost is ~3 passes whatever the graph; exact patching's is one "
        "patched pass per edge, ACDC's one per tried edge per τ — on GPT-2 small (32,491 edges) the gap is "
        "what makes EAP usable at all.",
        f"- *Resample ablation on tracr* (the paper's setting): EAP ties every other method. It ranks "
        f"auto-circuit's official circuit first (AUC {auc(rev, 'resample', 'eap', 'circuit_official')} reverse, "
        f"{auc(prop, 'resample', 'eap', 'circuit_official')} proportion), its top 2 / top 3 edges recover the "
        f"whole effect (faithfulness {faith(rev, 'resample', 'eap', 2)}, {faith(prop, 'resample', 'eap', 3)}), "
        f"and it reaches the cap against the weight circuit ({auc(rev, 'resample', 'eap')}, "
        f"{auc(prop, 'resample', 'eap')}) exactly as ACDC does ({auc(rev, 'resample', 'acdc')}, "
        f"{auc(prop, 'resample', 'acdc')}).",
        f"- *toy-ioi, k ≥ 10:* EAP's top {k_ioi[1]} edges recover {faith(ioi, 'resample', 'eap', k_ioi[1])} of the "
        f"logit difference (exact: {faith(ioi, 'resample', 'exact', k_ioi[1])}, ACDC: "
        f"{faith(ioi, 'resample', 'acdc', k_ioi[1])}); at k = {k_ioi[2]} it is a little behind "
        f"({faith(ioi, 'resample', 'eap', k_ioi[2])} vs {faith(ioi, 'resample', 'exact', k_ioi[2])} exact, "
        f"{faith(ioi, 'resample', 'acdc', k_ioi[2])} ACDC).",
        "",
        "**Where EAP loses.** Each time for the reason EAP-IG was made: a gradient taken at the clean point "
        "misses effects that sit behind saturated attention or a ReLU plateau.",
        f"- *tracr-proportion, zero ablation:* the query/key edges of the hard-attention head (positions) get "
        f"EAP scores ~1e-7 (exact: −0.28), under the noise floor: AUC {auc(prop, 'zero', 'eap')} against "
        f"{auc(prop, 'zero', 'eap-ig-inputs')} for EAP-IG-inputs, {auc(prop, 'zero', 'exact')} exact and "
        f"{auc(prop, 'zero', 'acdc')} ACDC. clean-corrupted fails the same way ({auc(prop, 'zero', 'clean-corrupted')}).",
        f"- *tracr-reverse, zero ablation:* every method's AUC is {auc(rev, 'zero', 'eap')} (the length head is "
        "invisible on this data, below), but the AUC hides how: EAP scores the length path 1e-5 of the gap and "
        f"`input->m1` (the opposite index, exact −2.9) 0, so its top 9 edges recover "
        f"{faith(rev, 'zero', 'eap', 9)} where EAP-IG-inputs, exact and ACDC recover "
        f"{faith(rev, 'zero', 'eap-ig-inputs', 9)}.",
        f"- *toy-induction:* the induction head's attention is saturated. EAP puts the previous-token → "
        f"induction-key edge at rank {rank(ind, 'resample', 'eap')} (EAP-IG-inputs {rank(ind, 'resample', 'eap-ig-inputs')}, "
        f"exact {rank(ind, 'resample', 'exact')}, ACDC {rank(ind, 'resample', 'acdc')}), so its top 3 recover "
        f"{faith(ind, 'resample', 'eap', 3)} of the logit difference against {faith(ind, 'resample', 'exact', 3)} "
        f"for the others. With zero ablation the gap is wide: AUC {auc(ind, 'zero', 'eap')} (key edge at "
        f"rank {rank(ind, 'zero', 'eap')}) vs EAP-IG-inputs {auc(ind, 'zero', 'eap-ig-inputs')}, exact "
        f"{auc(ind, 'zero', 'exact')}, ACDC {auc(ind, 'zero', 'acdc')}. Under resample ablation no method scores "
        f"well against the expected circuit ({auc(ind, 'resample', 'eap')}–{auc(ind, 'resample', 'clean-corrupted')}): "
        "the corruption changes one earlier token, so the query and the current-token edges carry no "
        "difference, while edges of the other heads do.",
        f"- *toy-ioi, k = {k_ioi[0]}:* EAP's top {k_ioi[0]} recover {faith(ioi, 'resample', 'eap', k_ioi[0])}, "
        f"every other method's {faith(ioi, 'resample', 'exact', k_ioi[0])}.",
        "",
        f"**ACDC.** Its AUCs track exact patching's (both measure rather than estimate), at "
        f"{min(ratios):.0f}–{max(ratios):.0f}× exact patching's time for a {pick(rows, rev, 'resample', 'acdc')['note'].split()[0]}-"
        "point τ sweep here. It tests each edge on top of the edges already removed, so it can see "
        "interactions single-edge methods cannot; on these models that changed little.",
        "",
        "**Against ACDC's paper.** It reports edge AUC (resample ablation) "
        f"tracr-proportion {PAPER_AUC[prop]:.3f} and tracr-reverse {PAPER_AUC[rev]:.3f}; our ACDC gets "
        f"{auc(prop, 'resample', 'acdc', 'circuit_acdc')} and {auc(rev, 'resample', 'acdc', 'circuit_acdc')} "
        "against the same published circuits. The graphs differ (ACDC splits the embedding into token and "
        "position nodes and adds q/k/v-internal edges; ours has one `input` node), and so do the pairs and "
        "the tracr metric; what carries over is the mechanism: with resampled same-length pairs no method can "
        "find the edges the corruption does not change.",
        "",
        "**Why AUC against the weight circuit is capped under resample ablation.** Every pair has the same "
        "length and positions, so edges that carry only the constant (BOS/`one`), the positions or the "
        "length have exactly the same value in the clean and the corrupted run: patching them changes "
        "nothing and every method scores them 0, tied with the non-edges. The best AUC against the weight "
        "circuit is then 0.577 (reverse) and 0.800 (proportion); against auto-circuit's official circuits, "
        "which hold exactly the edges resampling can see, it is 1. Zero ablation shows the hidden edges "
        "and the methods separate. One stays hidden even then: every tracr-reverse pair has the maximum "
        "length, and with the length head (a0.h0) zeroed m0 decodes length 5 anyway, so its 4 edges do "
        "not matter on this data (ACDC drops them at τ = 0; tests/test_acdc.py).",
    ]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(infos, rows, total_seconds):
    lines = [
        "# edgewise vs ACDC on the bundled tasks",
        "",
        "Produced by `bench/compare_methods.py` (`make results`); do not edit by hand. Every number except "
        "the wall times is deterministic.",
        f"Machine: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, 1 CPU thread, "
        f"batch size {BATCH}, EAP-IG with {IG_STEPS} steps. Whole script: {total_seconds:.0f} s.",
        "",
        "- **AUC**: `ew.roc_auc` of each method's |score| ranking against a known circuit (ties count half, "
        "|score| below 1e-6 × max counts as 0). ACDC's ranking is its τ sweep: an edge scores the largest τ "
        "(12 values, log-spaced from 1e-5 to 3 × |metric_clean − metric_corrupted|) at which ACDC keeps it, "
        "so its AUC is the area under ACDC's ROC over τ.",
        "- **Truths** (tracr): *weights* = the circuit read off the compiled weights (what u writes meets "
        "what v reads); *ACDC's* = the circuit published with ACDC (zero ablation); *official* = "
        "auto-circuit's circuit, the edges a same-length resampled corruption can change. toy-induction: "
        "the expected induction circuit (7 edges). toy-ioi: no known circuit, faithfulness only.",
        "- **Faithfulness**: normalized, (metric_circuit − metric_corrupted) / (metric_clean − "
        "metric_corrupted), of the top-k edges, with every other edge patched to the same ablation. For "
        "ACDC, ties in the sweep are broken by the |Δmetric| each edge caused in the lowest-τ run.",
        "- **Time**: wall seconds for the method on this machine (noisy: the machine is shared); ACDC's is "
        "the whole sweep.",
        "",
    ]
    for name, info in infos.items():
        task_rows = [r for r in rows if r["task"] == name]
        pairs = f"{info['n_pairs']} pairs" + (f" (first {info['n_pairs']} of {info['n_pairs_all']})"
                                              if info["n_pairs"] < info["n_pairs_all"] else "")
        lines += [f"## {name}", "", f"{info['n_edges']} edges, {pairs}, metric `{info['metric']}`"
                  + (f", key edge `{info['key_edge']}`" if info["key_edge"] else "") + ".", ""]
        if info["truths"]:
            lines += ["Edge ROC-AUC:", ""] + auc_table(info, task_rows) + [""]
        else:
            lines += ["Wall time: " + ", ".join(f"{r['method']} {r['seconds']:.2f} s" for r in task_rows) + ".", ""]
        lines += ["Normalized faithfulness of the top-k edges:", ""] + faith_table(info, task_rows) + [""]
    return "\n".join(lines + summary(infos, rows)) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    infos, rows = {}, []
    for name in args.tasks:
        info, task_rows = run_task(name, TASKS[name], lambda s: print(s, file=sys.stderr, flush=True))
        infos[name] = info
        rows += task_rows
    if set(args.tasks) != set(TASKS):
        print("not every task ran: no report written", file=sys.stderr)
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(infos, rows, time.perf_counter() - t0))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

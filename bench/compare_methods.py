"""Every method on every bundled task, all pairs: MIB's CPR and CMD, ROC-AUC against the known
circuits, faithfulness of the top-k edges, time. Writes docs/results.md (`make results`).

Methods: eap, eap-ig-inputs, eap-ig-activations, clean-corrupted, relp, exact, and ACDC, whose
ranking is its τ sweep (an edge scores the largest τ at which ACDC keeps it, `acdc_sweep`; ties
broken by the |Δmetric| each edge caused in the lowest-τ run). A method/ablation pair the engine
refuses as ill-defined is listed as refused. Jobs run in 2 processes of 1 torch thread each (the
largest, ACDC on toy-ioi, alone). Every number but the wall times is deterministic.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import edgewise as ew
from edgewise.acdc import AcdcSweep, acdc, default_taus
from edgewise.evaluate import top_k_masks
from edgewise.tasks import load_task

# tiny models on a shared machine: more threads only add synchronisation (measured up to 30× slower)
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["eap", "eap-ig-inputs", "eap-ig-activations", "clean-corrupted", "relp", "exact", "acdc"]
TRUTH_NAMES = {"circuit": "weights", "circuit_acdc": "ACDC's", "circuit_official": "official"}  # tracr truths
TASKS = {  # ablations compared and the top-k sizes for the faithfulness table; every pair is used
    "interp-lookup": dict(ablations=["resample", "zero"], ks=[3, 7, 15, 30, 60]),
    "toy-ioi": dict(ablations=["resample"], ks=[10, 20, 50, 100, 200]),
    "toy-induction": dict(ablations=["resample", "zero"], ks=[1, 3, 5, 10, 15]),
    "tracr-reverse": dict(ablations=["resample", "zero"], ks=[2, 5, 9, 13, 20]),
    "tracr-proportion": dict(ablations=["resample", "zero"], ks=[1, 2, 3, 5, 10]),
}
PAPER_AUC = {"tracr-proportion": 0.600, "tracr-reverse": 0.200}  # ACDC paper, edge AUC, resample ablation
BATCH = 256
IG_STEPS = 5
WORKERS = 2
ACDC_SPLIT = {"toy-ioi": 2}  # ACDC's τ sweep in this many parallel parts (toy-ioi's alone is ~4 CPU-minutes)


def run_method(model, pairs, metric, method, ablation, ev, acdc_runs=None):
    """(scores for ROC, signed scores for MIB and top-k, seconds, note, warnings). ACDC: its τ
    sweep as ranks, the most important edge the largest; MIB gets −rank (edgewise's sign: most
    negative first), so CPR and CMD both rank by the sweep. `acdc_runs`: the sweep's runs, computed
    in parts (`acdc_part`); seconds is then their sum."""
    t0 = time.perf_counter()
    if method == "acdc":
        parts = acdc_runs if acdc_runs is not None else [acdc_part(model, pairs, metric, ablation, ev, 0, 1)]
        runs = sorted((r for part in parts for r in part["runs"]), key=lambda r: r.tau)
        sweep = AcdcSweep(ev.graph, [r.tau for r in runs], runs)
        seconds = sum(part["seconds"] for part in parts)
        scores, tie = sweep.scores, sweep.runs[0].scores
        order = sorted(range(len(scores)), key=lambda e: (-float(scores[e]), -float(tie[e]), e))
        ranked = torch.zeros(len(scores), dtype=torch.float64)
        ranked[order] = torch.arange(len(scores), 0, -1, dtype=torch.float64)
        note = f"{len(sweep.taus)} τ, {sum(r.n_forward for r in sweep.runs)} tries"
        return scores, -ranked, seconds, note, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kept in res.warnings and reported below the tables
        res = ew.attribute(model, pairs, method=method, metric=metric, batch_size=BATCH, ablation=ablation,
                           ig_steps=IG_STEPS)
    return res.scores, res.scores, time.perf_counter() - t0, "", [w for w in res.warnings if method in w]


def acdc_part(model, pairs, metric, ablation, ev, i, n) -> dict:
    """ACDC at every n-th τ of the sweep from the i-th (the runs are independent: one per τ)."""
    t0 = time.perf_counter()
    ev.metrics([ev.graph.edge_mask])  # metric_clean / metric_corrupted
    taus = default_taus(ev.metric_clean - ev.metric_corrupted)[i::n]
    runs = [acdc(model, pairs, metric, tau, ablation, BATCH, evaluator=ev) for tau in taus]
    return {"runs": runs, "seconds": time.perf_counter() - t0}


def run_job(job):
    """(task, ablation, methods, parts) → (info, rows) in a worker process. A method "acdc#i/n"
    returns a part of ACDC's sweep; `parts` hands in all of them to score "acdc"."""
    torch.set_num_threads(1)
    name, ablation, methods, parts = job
    task = load_task(name)
    model, pairs, metric = task.hooked_model, task.pairs, task.metric
    g = ew.Graph.from_model(model)
    truths = {k: g.mask_from_edges(v)[g.edge_mask] for k, v in task.circuits.items()}
    ks = TASKS[name]["ks"]
    with torch.no_grad():  # warm up, so the first method timed pays no one-off costs
        model(torch.tensor([pairs.clean[0]]))
    ev = ew.CircuitEvaluator(model, pairs, metric, ablation, BATCH, cache=True)
    rows = []
    for method in methods:
        row = dict(task=name, ablation=ablation, method=method)
        if method.startswith("acdc#"):
            i, n = map(int, method[5:].split("/"))
            rows.append({**row, "part": acdc_part(model, pairs, metric, ablation, ev, i, n)})
            continue
        try:
            roc, signed, seconds, note, warned = run_method(model, pairs, metric, method, ablation, ev, parts)
        except ValueError as e:
            rows.append({**row, "refused": str(e)})
            continue
        mib = ew.mib_scores(model, pairs, signed, metric, ablation, BATCH, evaluator=ev)
        values = ev.metrics(top_k_masks(g, signed, ks))
        gap = ev.metric_clean - ev.metric_corrupted
        key = task.spec.get("key_edge")
        rows.append({**row, "seconds": seconds, "note": note, "warnings": warned,
                     "auc": {k: ew.roc_auc(roc, t)[2] for k, t in truths.items()},
                     "cpr": mib["cpr"], "cmd": mib["cmd"],
                     "faith": {k: (v - ev.metric_corrupted) / gap if gap else None for k, v in zip(ks, values)},
                     "key_rank": _key_rank(g, signed, key) if key else None})
    info = dict(name=name, n_pairs=len(pairs), n_edges=g.n_edges, metric=metric, key_edge=task.spec.get("key_edge"),
                truths={k: len(v) for k, v in task.circuits.items()}, ks=ks, ablations=TASKS[name]["ablations"])
    return info, rows


def _key_rank(g, scores, edge):
    """1-based rank of `edge` by |score| (ties: graph order, as Circuit.from_scores)."""
    order = torch.argsort(scores.abs(), descending=True, stable=True).tolist()
    return order.index(g.edge_position[edge]) + 1


def jobs(tasks) -> list:
    """(task, ablation, methods, None), the slowest first; ACDC's sweep on toy-ioi (~4 of the ~6
    CPU-minutes) in ACDC_SPLIT parts, one job each, scored when all are back (`run`)."""
    out = []
    for name in sorted(tasks, key=lambda t: -ACDC_SPLIT.get(t, 1)):
        for ablation in TASKS[name]["ablations"]:
            n = ACDC_SPLIT.get(name, 1)
            if n > 1:
                out += [(name, ablation, [f"acdc#{i}/{n}"], None) for i in range(n)]
                out.append((name, ablation, [m for m in METHODS if m != "acdc"], None))
            else:
                out.append((name, ablation, METHODS, None))
    return out


def run(tasks, workers) -> tuple[dict, list]:
    """Every job on `workers` processes; ACDC parts merged and scored in a second round."""
    infos, rows, parts = {}, [], {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        todo = jobs(tasks)
        while todo:
            again = []
            for (name, ablation, _, _), (info, job_rows) in zip(todo, pool.map(run_job, todo)):
                infos[name] = info
                for r in job_rows:
                    if "part" in r:
                        parts.setdefault((name, ablation), []).append(r["part"])
                        if len(parts[name, ablation]) == ACDC_SPLIT[name]:
                            again.append((name, ablation, ["acdc"], parts[name, ablation]))
                        continue
                    rows.append(r)
                    what = "refused" if "refused" in r else (
                        f"{r['seconds']:7.2f}s  CPR {fmt(r['cpr'])} CMD {fmt(r['cmd'])} "
                        + " ".join(f"AUC={fmt(v)}" for v in r["auc"].values()))
                    print(f"{name:17s} {ablation:8s} {r['method']:19s} {what}", file=sys.stderr, flush=True)
            todo = again
    order = {(t, a, m): i for i, (t, a, m) in enumerate((t, a, m) for t in TASKS for a in TASKS[t]["ablations"]
                                                         for m in METHODS)}
    rows.sort(key=lambda r: order[r["task"], r["ablation"], r["method"]])
    return {t: infos[t] for t in TASKS if t in infos}, rows


# ---------------------------------------------------------------- the report
def fmt(x, nd=3):
    return "–" if x is None or x != x else f"{x:.{nd}f}"


def truth_name(task, key):
    return TRUTH_NAMES[key] if task.startswith("tracr") else "known"


def scores_table(info, rows):
    keys = list(info["truths"])
    head = ("| ablation | method | CPR ↑ | CMD ↓ | "
            + " | ".join(f"AUROC vs {truth_name(info['name'], k)} ({info['truths'][k]})" for k in keys)
            + (" | key-edge rank" if info["key_edge"] else "") + " | time (s) |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "refused" in r:
            out.append(f"| {r['ablation']} | {r['method']} | refused: ill-defined (below) |"
                       + " |" * (len(keys) + 2 + bool(info["key_edge"])))
            continue
        cells = [fmt(r["cpr"]), fmt(r["cmd"])] + [fmt(r["auc"][k]) for k in keys]
        cells += [str(r["key_rank"])] if info["key_edge"] else []
        mark = " †" if r["warnings"] else ""
        t = f"{r['seconds']:.2f}" + (f" ({r['note']})" if r["note"] else "")
        out.append(f"| {r['ablation']} | {r['method']}{mark} | " + " | ".join(cells) + f" | {t} |")
    return out


def faith_table(info, rows):
    head = "| ablation | method | " + " | ".join(f"k={k}" for k in info["ks"]) + " |"
    out = [head, "|" + "---|" * (len(info["ks"]) + 2)]
    for r in rows:
        if "refused" not in r:
            out.append(f"| {r['ablation']} | {r['method']} | " + " | ".join(fmt(r["faith"][k], 2) for k in info["ks"])
                       + " |")
    return out


def notes(rows):
    seen, out = set(), []
    for r in rows:
        for text in ([r["refused"]] if "refused" in r else r.get("warnings", [])):
            key = (r["ablation"], r["method"])
            if key not in seen:
                seen.add(key)
                out.append(f"- {r['ablation']} / {r['method']}: " + ("**refused**: " if "refused" in r else "† ") + text)
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(infos, rows, total_seconds, summary):
    lines = [
        "# Every method on the bundled tasks: MIB's CPR / CMD, ROC-AUC, faithfulness",
        "",
        "Produced by `bench/compare_methods.py` (`make results`); do not edit by hand. Every number except "
        "the wall times is deterministic.",
        f"Machine: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, {WORKERS} processes of 1 CPU "
        f"thread, batch size {BATCH}, EAP-IG with {IG_STEPS} steps, all pairs of every task. Whole script: "
        f"{total_seconds:.0f} s.",
        "",
        "- **CPR / CMD**: `ew.mib_scores`, as the MIB circuit track's `evaluate_area_under_curve`: at 0.1 %, "
        "0.2 %, 0.5 %, 1 %, 2 %, 5 %, 10 %, 20 %, 50 %, 100 % of the edges the top edges, pruned to those on an "
        "input → logits path, give faithfulness f = (circuit − all ablated) / (clean − all ablated); CPR is the "
        "area under f (edges ranked by signed score, most negative first: MIB attributes the loss), higher is "
        "better; CMD the area under |1 − f| (ranked by |score|), lower is better. Both over the fraction of "
        "edges, from 0.001 to 1.",
        "- **AUROC**: `ew.roc_auc` of each method's |score| ranking against a known circuit (ties count half, "
        "|score| below 1e-6 × max counts as 0), as MIB scores InterpBench. ACDC's ranking is its τ sweep: an "
        "edge scores the largest τ (12 values, log-spaced from 1e-5 to 3 × |metric_clean − metric_corrupted|) "
        "at which ACDC keeps it, so its AUC is the area under ACDC's ROC over τ; its CPR / CMD rank edges by "
        "that sweep.",
        "- **Known circuits**: interp-lookup, the 7 edges SIIT trained in (docs/zoo.md); toy-induction, the "
        "induction circuit read from attention patterns; toy-ioi, the circuit found by path patching "
        "(docs/zoo.md; evidence, not construction). tracr: *weights* = read off the compiled weights; *ACDC's* "
        "= published with ACDC; *official* = auto-circuit's, the edges a same-length resampled corruption can "
        "change.",
        "- **Faithfulness** (second table per task): normalized faithfulness of the top-k edges by |score|, every "
        "other edge patched to the ablation, no pruning.",
        "- **Refused / †**: the engine refuses `eap-ig-inputs` and `clean-corrupted` under zero ablation on a "
        "model whose first layer reads the input through LayerNorm / RMSNorm, and warns where a pair is "
        "doubtful (README, *Ill-defined combinations*); the messages are listed under each table.",
        "- **relp** holds attention patterns constant (the AH-rule), so it scores every query and key edge "
        "exactly 0: wherever a known circuit runs through queries or keys (interp-lookup's `input->a0.h1<q>` / "
        "`<k>`, toy-induction's key composition) those edges tie with the unscored ones, which caps its AUROC "
        "and its CPR there.",
        "- **Time**: wall seconds of the attribution alone on this shared machine (noisy); ACDC's is the sweep.",
        "",
    ]
    for name, info in infos.items():
        task_rows = [r for r in rows if r["task"] == name]
        lines += [f"## {name}", "", f"{info['n_edges']} edges, {info['n_pairs']} pairs, metric `{info['metric']}`"
                  + (f", key edge `{info['key_edge']}`" if info["key_edge"] else "") + ".", ""]
        lines += scores_table(info, task_rows) + [""]
        lines += ["Normalized faithfulness of the top-k edges:", ""] + faith_table(info, task_rows) + [""]
        extra = notes(task_rows)
        lines += (["Refusals and warnings:", ""] + extra + [""]) if extra else []
    return "\n".join(lines + summary(infos, rows)) + "\n"


def summary(infos, rows):
    """One table over every task: CPR / CMD / AUROC (against the task's first known circuit) of each
    method under each task's first ablation (resample), the numbers README quotes."""
    tasks = list(infos)
    head = "| method | " + " | ".join(f"{t} CPR / CMD / AUROC" for t in tasks) + " |"
    out = ["## Summary (resample ablation)", "",
           "CPR ↑ / CMD ↓ / AUROC against each task's first known circuit (tracr: the weights'), from the "
           "tables above.", "", head, "|" + "---|" * (len(tasks) + 1)]
    for method in METHODS:
        cells = []
        for t in tasks:
            r = next((r for r in rows if r["task"] == t and r["method"] == method
                      and r["ablation"] == infos[t]["ablations"][0]), None)
            if r is None or "refused" in r:
                cells.append("refused" if r else "–")
                continue
            auc = r["auc"][next(iter(infos[t]["truths"]))]
            cells.append(f"{fmt(r['cpr'])} / {fmt(r['cmd'])} / {fmt(auc)}")
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    return out + [""] + reading(rows)


def _get(rows, task, ablation, method):
    return next((r for r in rows if (r["task"], r["ablation"], r["method"]) == (task, ablation, method)
                 and "refused" not in r), None)


def reading(rows):
    """What the tables say that is not a single number: the ACDC paper's AUCs, why tracr's AUC is capped,
    and what RelP cannot see. Every number quoted is read from `rows`."""
    out = ["## Reading the numbers", ""]
    prop, rev = (_get(rows, t, "resample", "acdc") for t in ("tracr-proportion", "tracr-reverse"))
    if prop and rev and "circuit_acdc" in prop["auc"]:
        out += [f"**Against ACDC's paper.** It reports edge AUC (resample ablation) tracr-proportion "
                f"{PAPER_AUC['tracr-proportion']:.3f} and tracr-reverse {PAPER_AUC['tracr-reverse']:.3f}; our ACDC "
                f"gets {fmt(prop['auc']['circuit_acdc'])} and {fmt(rev['auc']['circuit_acdc'])} against the same "
                "published circuits. The graphs differ (ACDC splits the embedding into token and position nodes "
                "and adds q/k/v-internal edges; ours has one `input` node), and so do the pairs and the tracr "
                "metric; what carries over is the mechanism: with resampled same-length pairs no method can find "
                "the edges the corruption does not change.", ""]
    out += ["**Why AUC against tracr's weight circuit is capped under resample ablation.** Every pair has the "
            "same length and positions, so edges that carry only the constant (BOS/`one`), the positions or the "
            "length have the same value in the clean and the corrupted run: patching them changes nothing and "
            "every method scores them 0, tied with the non-edges. Against auto-circuit's official circuits, which "
            "hold exactly the edges resampling can see, every method reaches 1. Zero ablation shows the hidden "
            "edges, and the methods separate.", ""]
    ind, ind_exact = _get(rows, "toy-induction", "resample", "relp"), _get(rows, "toy-induction", "resample", "exact")
    il = _get(rows, "interp-lookup", "zero", "relp")
    gradient = [_get(rows, "interp-lookup", "zero", m) for m in METHODS if m not in ("exact", "acdc", "relp")]
    if ind and ind_exact and il:
        best = all(r is None or r["cpr"] < il["cpr"] for r in gradient)
        out += [f"**RelP.** It costs what EAP costs, and holds norm scales and MLP ratios at the clean run "
                f"(interp-lookup under zero ablation: CPR {fmt(il['cpr'])}"
                + (", the best of the gradient methods there" if best else "") + "). Holding attention patterns "
                f"constant, it scores every query and key edge 0, so a circuit made of key composition is out of its "
                f"reach: toy-induction's key edge ranks {ind['key_rank']} (exact patching: {ind_exact['key_rank']}), "
                f"CPR {fmt(ind['cpr'])} vs {fmt(ind_exact['cpr'])}. The RelP authors' own example runs without the "
                "attention rule (`LRP_rules = ['LN-rule', 'Identity-rule', 'Half-rule']`); edgewise applies it, as "
                "the paper's rule table lists it.", ""]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--save", help="also write the measurements as JSON here")
    ap.add_argument("--load", help="write the report from a --save file instead of measuring")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.load:
        saved = json.loads(Path(args.load).read_text())
        return _write(args.out, saved["infos"], saved["rows"], saved["seconds"])
    infos, rows = run(args.tasks, args.workers)
    if args.save:
        Path(args.save).write_text(json.dumps({"infos": infos, "rows": rows, "seconds": time.perf_counter() - t0},
                                              default=float))
    if set(args.tasks) != set(TASKS):
        print("not every task ran: no report written", file=sys.stderr)
        return
    _write(args.out, infos, rows, time.perf_counter() - t0)


def _write(path, infos, rows, seconds):
    for r in rows:  # JSON keys are strings: the faithfulness table looks k up as an int
        r["faith"] = {int(k): v for k, v in r.get("faith", {}).items()}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(infos, rows, seconds, summary))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

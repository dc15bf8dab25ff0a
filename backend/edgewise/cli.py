"""The `edgewise` command: the web app, and the engine from the shell.

    edgewise serve [--host 127.0.0.1] [--port 8000] [--data DIR] [--ray-address local|auto|ray://host:port]
    edgewise attribute --model M --pairs FILE [--method eap] [--metric logit_diff] [--ablation resample]
                       [--top-k 100 | --min-abs-score X] [--dtype float32|bfloat16|float16] --out circuit.json
    edgewise attribute --task tracr-reverse --out circuit.json      # a bundled task's model, pairs, metric
    edgewise attribute ... --mib ioi_gpt2/importances.pt           # also MIB's submission file (.json or .pt)
    edgewise attribute ... --workers 4 [--ray-address auto]          # sharded over Ray actors (edgewise[ray])
    edgewise evaluate --model M --pairs FILE --circuit circuit.json
    edgewise mib-export --circuit circuit.json --out importances.json  # a circuit JSON's scores in MIB's format
    edgewise bench [ARGS...]                                        # bench/bench_attribution.py ARGS
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_attribution.py"


class CLIError(Exception):
    """A user error: printed as `edgewise: error: …`, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except CLIError as e:
        print(f"edgewise: error: {e}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgewise", description="Find circuits with Edge Attribution Patching.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the web app (uvicorn)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--data", help="data directory (default $EDGEWISE_DATA or ./data)")
    s.add_argument("--log-level", default="info")
    s.add_argument("--ray-address", help="compute runs on this Ray cluster: local, auto or ray://host:port "
                   "(default $EDGEWISE_RAY_ADDRESS; none: this machine's device)")
    s.set_defaults(func=serve)

    a = sub.add_parser("attribute", help="score every edge and write a circuit JSON")
    source(a)
    a.add_argument("--method", default="eap",
                   help="eap | eap-ig-inputs | eap-ig-activations | clean-corrupted | relp | exact")
    a.add_argument("--ig-steps", type=int, default=5)
    pick = a.add_mutually_exclusive_group()
    pick.add_argument("--top-k", type=int, help="edges kept in the circuit (default 100)")
    pick.add_argument("--min-abs-score", type=float, help="keep every edge with |score| at least this")
    a.add_argument("--out", required=True, help="circuit JSON to write")
    a.add_argument("--no-faithfulness", action="store_true", help="skip evaluating the kept circuit")
    a.add_argument("--mib", help="also write every edge's score as MIB's importance file (.json or .pt)")
    a.set_defaults(func=attribute)

    e = sub.add_parser("evaluate", help="faithfulness of a circuit JSON on prompt pairs")
    source(e)
    e.add_argument("--circuit", required=True, help="circuit JSON (edgewise or EAP-IG)")
    e.set_defaults(func=evaluate)

    x = sub.add_parser("mib-export", help="a circuit JSON's scores as MIB's importance file (.json or .pt)")
    x.add_argument("--circuit", required=True,
                   help="an edgewise circuit JSON (every edge's score, edgewise's sign: MIB's is its negative)")
    x.add_argument("--out", required=True, help="importances.json or importances.pt")
    x.set_defaults(func=mib_export)

    b = sub.add_parser("bench", help="run bench/bench_attribution.py (extra arguments are passed on)")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=bench)
    return p


def source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="zoo name, TransformerLens name or local checkpoint directory")
    p.add_argument("--pairs", help="prompt pairs: CSV, JSON or JSONL")
    p.add_argument("--task", help="a bundled task: its model, pairs and metric unless given")
    p.add_argument("--metric", help="logit_diff (default), prob_diff, kl, or a task metric")
    p.add_argument("--ablation", default="resample", help="resample | zero | mean")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", help="torch device (default $EDGEWISE_DEVICE, else cuda if available, else cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weights and activations (default float32; bfloat16/float16 halve memory on a GPU)")
    p.add_argument("--workers", type=int, help="shard the pairs over this many Ray actors, each holding the model "
                   "(one per GPU; needs edgewise[ray])")
    p.add_argument("--ray-address", help="the Ray cluster: local (start one here), auto (`ray start --head` on this "
                   "machine) or ray://host:port; default: a local one")


# ------------------------------------------------------------------ serve
def serve(args) -> int:
    import uvicorn

    from .server import Settings, create_app
    from .server.config import LOCAL_HOSTS, SettingsError
    from .server.store import StoreError

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        raise CLIError(str(e)) from None
    if args.data:
        settings.data_dir = Path(args.data)
    if args.ray_address:
        from .server.config import ray_address

        try:
            settings.ray_address = ray_address(args.ray_address)
        except SettingsError as e:
            raise CLIError(str(e).replace("EDGEWISE_RAY_ADDRESS", "--ray-address")) from None
    if args.host not in LOCAL_HOSTS + ("0.0.0.0", "::"):  # the name this server is reached by
        settings.allowed_hosts += (args.host.lower(),)
    if args.host not in LOCAL_HOSTS and not settings.token:
        print(f"edgewise: warning: serving on {args.host} without EDGEWISE_TOKEN: anyone who can reach this port "
              "can use the API (only requests addressed to localhost or EDGEWISE_ALLOWED_HOSTS are answered)",
              file=sys.stderr)
    try:
        app = create_app(settings)
    except (StoreError, ImportError) as e:
        raise CLIError(str(e)) from None
    except RuntimeError as e:  # a Ray cluster that cannot be joined
        raise CLIError(str(e)) from None
    print(f"edgewise: http://{args.host}:{args.port}/  (data: {settings.data_dir.resolve()})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=3)
    return 0


# ------------------------------------------------------------------ attribute / evaluate
def sources(args):
    """(model name, pairs path, metric) from --task / --model / --pairs / --metric."""
    from . import tasks  # noqa: F401  (registers the task metrics)

    task = None
    if args.task:
        try:
            task = tasks.load_task(args.task)
        except ValueError as e:
            raise CLIError(str(e)) from None
    model_name = args.model or (task.model if task else None)
    pairs_path = args.pairs or (task.pairs_path if task else None)
    if not model_name or not pairs_path:
        raise CLIError("give --model and --pairs, or --task")
    if not Path(pairs_path).is_file():
        raise CLIError(f"no pairs file {str(pairs_path)!r}")
    return model_name, pairs_path, args.metric or (task.metric if task else "logit_diff")


def sharded(args) -> bool:
    return args.workers is not None or args.ray_address is not None


def load_inputs(args):
    """(model, pairs, metric); CLIError names what is wrong. With --workers / --ray-address the model
    is a distributed.ModelName and one Ray actor tokenizes the pairs (no replica loads here)."""
    from .data import PairsError, PromptPairs, parse_records
    from .models import load_model

    model_name, pairs_path, metric = sources(args)
    if sharded(args):
        from . import distributed

        model = distributed.ModelName(model_name, args.dtype, args.device)
        try:
            pairs = distributed.tokenize(model, parse_records(Path(pairs_path).read_bytes(), Path(pairs_path).name),
                                         args.ray_address)
        except PairsError as e:
            raise CLIError(f"{pairs_path}: {e}") from None
        except (ValueError, RuntimeError, OSError, ImportError) as e:
            raise CLIError(f"model {model_name!r}: {e}") from None
        return model, pairs, metric
    bar, update = progress_bar(f"loading {Path(model_name).name or model_name}")
    try:
        model = load_model(model_name, device=args.device, dtype=args.dtype, progress=lambda f, detail: update(f))
        update(1.0)  # zoo models load at once and report nothing
    except (ValueError, RuntimeError, OSError) as e:
        raise CLIError(f"model {model_name!r}: {e}") from None
    finally:
        bar.close()
    try:
        pairs = PromptPairs.from_file(model, pairs_path)
    except PairsError as e:
        raise CLIError(f"{pairs_path}: {e}") from None
    return model, pairs, metric


def progress_bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
               file=sys.stderr)

    def update(fraction: float) -> None:
        bar.update(max(0, round(fraction * 1000) - bar.n))

    return bar, update


def attribute(args) -> int:
    from .attribution import attribute as run_attribution
    from .evaluate import evaluate as run_evaluate

    if args.mib and Path(args.mib).suffix.lower() not in (".json", ".pt"):
        raise CLIError(f"--mib {args.mib}: MIB files end in .json or .pt")
    model, pairs, metric = load_inputs(args)
    ray = {"workers": args.workers, "ray_address": args.ray_address} if sharded(args) else {}
    on = f" on {args.workers or 'the'} Ray worker{'s' * (args.workers != 1)}" if ray else ""
    bar, update = progress_bar(f"{args.method} on {len(pairs)} pairs{on}")
    try:  # progress from every actor comes back as one fraction: one bar
        res = run_attribution(model, pairs, method=args.method, metric=metric, batch_size=args.batch_size,
                              ablation=args.ablation, ig_steps=args.ig_steps, progress=update, **ray)
    except (ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    finally:
        bar.close()
    res.model = res.model or (args.model or args.task)
    top_k = args.top_k if args.top_k is not None or args.min_abs_score is not None else 100
    circuit = res.circuit(top_k=top_k, min_abs_score=args.min_abs_score)
    circuit.meta["ablation"] = args.ablation
    if not args.no_faithfulness:
        bar, update = progress_bar("faithfulness")
        try:
            f = run_evaluate(model, pairs, circuit, metric=metric, ablation=args.ablation, batch_size=args.batch_size,
                             progress=update, **ray)
        except (ValueError, RuntimeError) as e:
            raise CLIError(str(e)) from None
        finally:
            bar.close()
        circuit.meta["faithfulness"] = {k: v for k, v in f.to_dict().items() if k != "n_edges"}
    Path(args.out).write_text(circuit.to_json())
    if args.mib:
        from .mib_export import write_mib
        try:
            write_mib(args.mib, res.graph, res.scores)
        except OSError as e:
            raise CLIError(f"cannot write {args.mib}: {e.strerror} (the circuit JSON {args.out} is written)") from None
        print(f"wrote {args.mib}: MIB importances of {res.graph.n_edges} edges (score = −{res.metric} attribution)")
    for w in res.warnings:
        print(f"edgewise: warning: {w}", file=sys.stderr)
    faith = circuit.meta.get("faithfulness", {}).get("normalized")
    print(f"wrote {args.out}: {circuit.n_edges} of {res.graph.n_edges} edges"
          + (f", normalized faithfulness {faith:.3f}" if faith is not None else ""))
    return 0


def read_circuit(path: str):
    """A circuit JSON (edgewise or EAP-IG), or a CLIError naming the file."""
    from .circuit import Circuit

    try:
        return Circuit.from_json(Path(path).read_bytes())
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise CLIError(f"{path}: {e}") from None


def evaluate(args) -> int:
    from .evaluate import evaluate as run_evaluate

    circuit = read_circuit(args.circuit)
    if args.metric is None and circuit.meta.get("metric"):
        args.metric = circuit.meta["metric"]
    model, pairs, metric = load_inputs(args)
    bar, update = progress_bar("faithfulness")
    try:
        f = run_evaluate(model, pairs, circuit, metric=metric, ablation=args.ablation, batch_size=args.batch_size,
                         progress=update, **({"workers": args.workers, "ray_address": args.ray_address}
                                             if sharded(args) else {}))
    except (ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    finally:
        bar.close()
    print(json.dumps(f.to_dict(), indent=1))
    return 0


def mib_export(args) -> int:
    from .mib_export import write_mib

    circuit = read_circuit(args.circuit)
    try:
        write_mib(args.out, circuit.graph, circuit.scores, circuit.in_graph)
    except ValueError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot write {args.out}: {e.strerror}") from None
    print(f"wrote {args.out}: MIB importances of {circuit.graph.n_edges} edges, {circuit.n_edges} in the graph")
    return 0


# ------------------------------------------------------------------ bench
def bench(args) -> int:
    if not BENCH.is_file():
        raise CLIError(f"{BENCH} not found: `edgewise bench` runs from a source checkout")
    rest = [a for a in args.rest if a != "--"]
    return subprocess.call([sys.executable, str(BENCH), *rest], env={**os.environ})


if __name__ == "__main__":
    sys.exit(main())

"""Independent references for the tests: single-pair runs with plain TransformerLens hooks.

Nothing here imports edgewise's patching or attribution code; edge names are parsed by hand.
"""
import re

import torch


def _flags(model):
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    if not model.cfg.attn_only:
        model.set_use_hook_mlp_in(True)


def source_act(cache, name):
    """[1, P, d] output of a source node from a TL cache."""
    if name == "input":
        return cache["blocks.0.hook_resid_pre"]
    m = re.fullmatch(r"a(\d+)\.h(\d+)", name)
    if m:
        return cache[f"blocks.{m[1]}.attn.hook_result"][:, :, int(m[2])]
    return cache[f"blocks.{name[1:]}.hook_mlp_out"]


def input_hook(model, dst):
    """(hook name, head index or None) where input slot `dst` reads the residual stream."""
    m = re.fullmatch(r"a(\d+)\.h(\d+)<([qkv])>", dst)
    if m:
        return f"blocks.{m[1]}.hook_{m[3]}_input", int(m[2])
    if dst == "logits":
        return f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", None
    return f"blocks.{dst[1:]}.hook_mlp_in", None


def logit_diff_last(logits, answer, wrong):
    return (logits[0, -1, answer] - logits[0, -1, wrong]).item()


def edge_patched_metric(model, clean, replacement_cache, clean_cache, edge, eps, answer, wrong, source=source_act):
    """logit diff of the clean prompt when input slot DST additionally receives
    eps × (replacement − clean) output of SRC (one pair, no batching); `source(cache, name)` reads a
    source node's output (default: source_act)."""
    src, dst = edge.split("->")
    delta = eps * (source(replacement_cache, src) - source(clean_cache, src))
    hook_name, head = input_hook(model, dst)

    def add(x, hook):
        x = x.clone()
        if head is None:
            x += delta
        else:
            x[:, :, head] += delta
        return x

    logits = model.run_with_hooks(torch.tensor([clean]), fwd_hooks=[(hook_name, add)])
    return logit_diff_last(logits, answer, wrong)


def caches(model, clean, corrupted):
    _flags(model)
    with torch.no_grad():
        _, cc = model.run_with_cache(torch.tensor([clean]))
        _, xc = model.run_with_cache(torch.tensor([corrupted]))
    return cc, xc


def zero_cache(cache):
    return {k: torch.zeros_like(v) for k, v in cache.items()}


def source_hook(model, name):
    """(hook name, head index or None) where source node `name` writes (per-head results)."""
    if name == "input":
        return "blocks.0.hook_resid_pre", None
    m = re.fullmatch(r"a(\d+)\.h(\d+)", name)
    if m:
        return f"blocks.{m[1]}.attn.hook_result", int(m[2])
    return f"blocks.{name[1:]}.hook_mlp_out", None


def patched_logits(model, clean, replacement, weights):
    """Logits [1, P, vocab] of one clean prompt where every input slot DST reads, on top of the
    residual stream, Σ_edges w · (replacement(SRC) − SRC's output in this same run), for
    weights = {"SRC->DST": w}; replacement = {"SRC": [1, P, d]}. Split q/k/v inputs and per-head
    results of TransformerLens, nothing of edgewise's patching."""
    _flags(model)
    run, hooks, by_dst = {}, [], {}
    for edge, w in weights.items():
        src, dst = edge.split("->")
        by_dst.setdefault(input_hook(model, dst), []).append((src, w))
    for src in {e.split("->")[0] for e in weights}:
        name, head = source_hook(model, src)

        def keep(x, hook, src=src, head=head):
            run[src] = (x if head is None else x[:, :, head]).detach().clone()
        hooks.append((name, keep))
    for (name, head), edges in by_dst.items():
        def add(x, hook, head=head, edges=edges):
            x = x.clone()
            delta = sum(w * (replacement[s] - run[s]) for s, w in edges)
            if head is None:
                x += delta
            else:
                x[:, :, head] += delta
            return x
        hooks.append((name, add))
    with torch.no_grad():
        return model.run_with_hooks(torch.tensor([clean]), fwd_hooks=hooks)

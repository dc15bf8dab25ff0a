import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the Ray tests' one-machine cluster listens on loopback only (Ray otherwise advertises the machine's
# outward address); read when ray is imported, so set before any test module imports it
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import edgewise as ew

# the test models are tiny: one thread avoids oversubscribing a shared 2-core machine (measured up
# to 30× slower with 2 threads under load, and no faster when idle)
torch.set_num_threads(1)


def tiny_model(seed=0, n_layers=3, n_heads=2, d_model=16, attn_only=False, parallel=False,
               dtype=torch.float64, normalization="LN", d_vocab=11, attention_dir="causal", n_ctx=12):
    """A random HookedTransformer with LayerNorm and GELU MLPs (float64 for tight numerical checks)."""
    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d_model, n_ctx=n_ctx, d_head=d_model // n_heads, n_heads=n_heads,
        d_vocab=d_vocab, act_fn="gelu", normalization_type=normalization, attn_only=attn_only,
        d_mlp=None if attn_only else 4 * d_model, parallel_attn_mlp=parallel, dtype=dtype,
        attention_dir=attention_dir, seed=seed, device="cpu", default_prepend_bos=False)
    model = HookedTransformer(cfg)
    with torch.no_grad():  # TL's init leaves biases at 0; random biases exercise more of the math
        for name, p in model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O", "b_in", "b_out")):
                p.normal_(0, 0.1)
    return model.eval()


def random_pairs(model, n=6, lengths=(5, 7, 4), seed=1):
    """Token-id pairs of mixed lengths; corrupted differs from clean in two positions."""
    g = torch.Generator().manual_seed(seed)
    V = model.cfg.d_vocab
    records = []
    for i in range(n):
        L = lengths[i % len(lengths)]
        clean = torch.randint(0, V, (L,), generator=g).tolist()
        corrupted = list(clean)
        for p in torch.randperm(L, generator=g)[:2].tolist():
            corrupted[p] = (clean[p] + 1 + int(torch.randint(0, V - 1, (1,), generator=g))) % V
        a, w = torch.randperm(V, generator=g)[:2].tolist()
        records.append({"clean": clean, "corrupted": corrupted, "answer": a, "wrong_answer": w})
    return ew.PromptPairs.from_records(model, records)


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture
def pairs(model):
    return random_pairs(model)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs, started once for the Ray tests (test_distributed*.py), stopped at the end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield ray
    ray.shutdown()

"""The CUDA path: every method, evaluation, bf16 and the server on a GPU agree with the CPU.

Marked `gpu`: skipped (with the reason) where torch sees no CUDA device, so `make test` passes on a
CPU-only machine; `bench/gpu.sh` runs them on a GPU machine (`pytest -m gpu`).
"""
import pytest
import torch
from conftest import random_pairs, tiny_model

import edgewise as ew

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")]

METHODS = ["eap", "eap-ig-inputs", "eap-ig-activations", "clean-corrupted", "relp", "exact"]


def on(model, device):
    """The same weights on another device (a fresh copy: hooks and flags are per model object)."""
    twin = tiny_model(seed=model.cfg.seed, n_layers=model.cfg.n_layers, n_heads=model.cfg.n_heads,
                      d_model=model.cfg.d_model, dtype=model.cfg.dtype)
    twin.load_state_dict(model.state_dict())
    return twin.to(device)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
@pytest.mark.parametrize("method", METHODS)
def test_attribution_on_cuda_equals_cpu(method, dtype, rtol):
    cpu = tiny_model(seed=3, dtype=dtype)
    pairs = random_pairs(cpu, n=7, seed=4)
    gpu = on(cpu, "cuda")
    for ablation in ("resample", "mean"):
        a = ew.attribute(cpu, pairs, method=method, ablation=ablation, batch_size=3, ig_steps=3)
        b = ew.attribute(gpu, pairs, method=method, ablation=ablation, batch_size=3, ig_steps=3)
        assert b.scores.device.type == "cpu"  # results come back to the host
        scale = a.scores.abs().max()
        torch.testing.assert_close(b.scores, a.scores, rtol=rtol, atol=rtol * float(scale))


def test_evaluation_and_curve_on_cuda_equal_cpu():
    cpu = tiny_model(seed=5, dtype=torch.float64)
    pairs = random_pairs(cpu, n=8, seed=6)
    gpu = on(cpu, "cuda")
    scores = ew.attribute(cpu, pairs, method="eap", batch_size=4).scores
    circuit = ew.Circuit.from_scores(ew.Graph.from_model(cpu), scores, top_k=20)
    for ablation in ("resample", "zero", "mean"):
        fa = ew.evaluate(cpu, pairs, circuit, ablation=ablation, batch_size=4)
        fb = ew.evaluate(gpu, pairs, circuit, ablation=ablation, batch_size=4)
        for key in ("metric_clean", "metric_corrupted", "metric_circuit"):
            assert getattr(fb, key) == pytest.approx(getattr(fa, key), rel=1e-9, abs=1e-12), (ablation, key)
    ca = ew.faithfulness_curve(cpu, pairs, scores, batch_size=4)
    cb = ew.faithfulness_curve(gpu, pairs, scores, batch_size=4)
    assert [p["k"] for p in ca] == [p["k"] for p in cb]
    for p, q in zip(ca, cb):
        assert q["metric_circuit"] == pytest.approx(p["metric_circuit"], rel=1e-9, abs=1e-12), p["k"]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def test_bf16_on_cuda_tracks_float32():
    ref = tiny_model(seed=7, n_layers=3, n_heads=4, d_model=64, dtype=torch.float32)
    pairs = random_pairs(ref, n=16, seed=8)
    f32 = ew.attribute(on(ref, "cuda"), pairs, method="eap", batch_size=8)
    bf = on(ref, "cuda").to(torch.bfloat16)
    bf.cfg.dtype = torch.bfloat16
    b16 = ew.attribute(bf, pairs, method="eap", batch_size=8)
    assert b16.scores.dtype in (torch.float32, torch.float64)  # accumulated above bf16
    assert spearman(b16.scores.float(), f32.scores.float()) >= 0.99


def transfers_per_run(model, pairs) -> int:
    """Host↔device copies during one attribution, counted by the profiler."""
    from torch.profiler import ProfilerActivity, profile

    ew.attribute(model, pairs, method="eap", batch_size=4)  # warm-up (allocator, kernels)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        ew.attribute(model, pairs, method="eap", batch_size=4)
        torch.cuda.synchronize()
    names = [e.name for e in prof.events()]
    return sum(("HtoD" in n or "DtoH" in n) and "Memcpy" in n for n in names)


def test_no_per_layer_transfers_in_the_hot_loop():
    """A weight or buffer left on the CPU costs a copy per layer: the count of host↔device copies
    must not grow with depth (only with batches: tokens in, scores out)."""
    counts = {}
    for n_layers in (2, 6):
        model = tiny_model(seed=9, n_layers=n_layers, dtype=torch.float32).to("cuda")
        pairs = random_pairs(model, n=8, seed=10)
        counts[n_layers] = transfers_per_run(model, pairs)
    assert counts[6] == counts[2], counts
    assert counts[2] <= 16 * 2, counts  # two batches: a handful of copies each


def test_server_runs_on_cuda(tmp_path, monkeypatch):
    """The app with EDGEWISE_DEVICE=cuda: a bundled task's pairs uploaded, a run done, its scores
    equal to the in-process CPU scores."""
    from fastapi.testclient import TestClient

    from edgewise.server import Settings, create_app

    monkeypatch.setenv("EDGEWISE_DEVICE", "cuda")
    task = ew.load_task("toy-ioi")
    settings = Settings.from_env(data_dir=tmp_path / "data", allowed_hosts=("testserver",))
    assert settings.resolved_device() == "cuda"
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/health").json()["device"] == "cuda"
        records = [dict(r) for r in task.pairs.records[:24]]
        ds = client.post("/api/datasets", json={"model": "toy-ioi", "pairs": records})
        assert ds.status_code == 201, ds.text
        run = client.post("/api/runs", json={"model": "toy-ioi", "dataset_id": ds.json()["id"], "method": "eap",
                                             "metric": task.metric, "batch_size": 8})
        assert run.status_code == 202, run.text
        import time

        deadline = time.monotonic() + 120
        while (r := client.get(f"/api/runs/{run.json()['id']}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, r
            time.sleep(0.1)
        assert r["status"] == "done", r
        edges = client.get(f"/api/runs/{r['id']}/edges").json()["edges"]
    cpu_model = ew.load_model("toy-ioi", device="cpu")
    pairs = ew.PromptPairs.from_records(cpu_model, records)
    ref = ew.attribute(cpu_model, pairs, method="eap", metric=task.metric, batch_size=8)
    ref_by_name = dict(zip(ref.edges, ref.scores.tolist()))
    scale = ref.scores.abs().max().item()
    for e in edges:
        assert e["score"] == pytest.approx(ref_by_name[e["name"]], abs=2e-4 * scale), e["name"]

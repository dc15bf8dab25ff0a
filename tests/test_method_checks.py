"""Ill-defined method/ablation pairs are refused and doubtful ones warned: in the engine, the CLI
and the server. The refusals rest on a measurable fact, checked here: under zero ablation the
gradient at the ablated end reads LayerNorm at x = 0, so the scores follow eps, not the model."""
import json
from pathlib import Path

import pytest
import torch
from api_support import settings, start_run, upload, wait
from conftest import random_pairs, tiny_model
from fastapi.testclient import TestClient

import edgewise as ew
import edgewise.attribution as attribution
from edgewise import cli
from edgewise.server import create_app

ZOO = Path(ew.__file__).resolve().parent / "zoo"
ALPHA0 = ("clean-corrupted", "eap-ig-inputs")


def with_eps(eps, **kw):
    model = tiny_model(seed=3, **kw)
    for m in model.modules():
        if hasattr(m, "eps"):
            m.eps = eps
    return model


def input_layer0(res):
    return torch.tensor([e.startswith("input->a0.") for e in res.edges])


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_zero_ablation_through_a_norm_is_refused_for_methods_with_an_alpha0_end(norm):
    model = tiny_model(normalization=norm)
    pairs = random_pairs(model)
    for method in ALPHA0:
        with pytest.raises(ValueError, match=rf"{method!r} with ablation 'zero' is ill-defined.*(LayerNorm|RMSNorm)"):
            ew.attribute(model, pairs, method=method, ablation="zero")
        with pytest.raises(ValueError, match="ill-defined"):
            ew.score_sums(model, pairs, [[0, 1]], method=method, ablation="zero")
        assert ew.attribute(model, pairs, method=method, ablation="resample", batch_size=6).scores.abs().max() > 0


def test_why_refused_the_alpha0_end_follows_eps(monkeypatch):
    """With the refusal lifted, the input→layer-0 scores under zero ablation follow LayerNorm's eps:
    clean-corrupted's grow as 1/√eps (100× smaller eps: 10× larger, measured 9.85 → 98.5 → 985 for
    eps 1e-3, 1e-5, 1e-7), eap-ig-inputs' shrink as eps (0.124 → 0.0013), while RelP's (0.418) and
    exact patching's (0.297) do not move."""
    monkeypatch.setattr(attribution, "method_warnings", lambda model, method, ablation: [])
    pairs = random_pairs(tiny_model(seed=3), n=4)
    big = {}
    for eps in (1e-3, 1e-5):
        for method in ("clean-corrupted", "eap-ig-inputs", "relp", "exact"):
            res = ew.attribute(with_eps(eps), pairs, method=method, ablation="zero", batch_size=4)
            big[method, eps] = res.scores[input_layer0(res)].abs().max().item()
    assert big["clean-corrupted", 1e-5] / big["clean-corrupted", 1e-3] > 5
    assert big["eap-ig-inputs", 1e-5] / big["eap-ig-inputs", 1e-3] < 0.1
    for method in ("relp", "exact"):
        assert big[method, 1e-5] / big[method, 1e-3] == pytest.approx(1, abs=0.05), method


def test_eap_under_zero_ablation_is_warned_blind_to_the_input_edges():
    """LayerNorm is scale-invariant, so its gradient is orthogonal to a_zero − a_clean = −x: EAP
    scores the input's edges into layer 0 ~0, where exact patching measures them."""
    model = tiny_model(seed=3)
    pairs = random_pairs(model, n=4)
    with pytest.warns(UserWarning, match="score ~0"):
        eap = ew.attribute(model, pairs, method="eap", ablation="zero", batch_size=4)
    exact = ew.attribute(model, pairs, method="exact", ablation="zero", batch_size=4)
    mask = input_layer0(eap)
    assert eap.scores[mask].abs().max() < 1e-3 * exact.scores[mask].abs().max()
    assert any("score ~0" in w for w in eap.warnings)
    relp = ew.attribute(model, pairs, method="relp", ablation="zero", batch_size=4)
    assert not any("zero ablation" in w for w in relp.warnings)


def test_doubtful_pairs_are_warned_and_run():
    """Mean ablation (or zero without a norm): the α = 0 end is the model on the ablated *input*,
    not every source ablated. Resample ablation: no warning at all."""
    for model, ablation in ((tiny_model(), "mean"), (tiny_model(normalization=None), "zero")):
        pairs = random_pairs(model)
        for method in ALPHA0:
            with pytest.warns(UserWarning, match="α = 0 end"):
                res = ew.attribute(model, pairs, method=method, ablation=ablation, batch_size=6)
            assert any(f"{ablation} input embedding" in w for w in res.warnings)
    model = tiny_model()
    pairs = random_pairs(model)
    for method in ew.METHODS:
        assert ew.attribute(model, pairs, method=method, ablation="resample", batch_size=6, ig_steps=2).warnings == []


@pytest.mark.filterwarnings("ignore:clean-corrupted with mean ablation")
def test_cli_refuses_with_a_message(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join((ZOO / "interp-lookup" / "pairs.jsonl").read_text().splitlines(True)[:4]))
    argv = ["attribute", "--model", "interp-lookup", "--pairs", str(pairs), "--out", str(tmp_path / "c.json"),
            "--method", "clean-corrupted", "--ablation", "zero", "--device", "cpu"]
    assert cli.main(argv) == 2
    assert "edgewise: error: method 'clean-corrupted' with ablation 'zero' is ill-defined" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
    argv[argv.index("zero")] = "mean"
    assert cli.main(argv + ["--no-faithfulness"]) == 0
    assert "edgewise: warning: clean-corrupted with mean ablation" in capsys.readouterr().err
    assert json.loads((tmp_path / "c.json").read_text())["method"] == "clean-corrupted"


@pytest.mark.filterwarnings("ignore:eap-ig-inputs with mean ablation")
def test_server_run_fails_with_the_reason_or_carries_the_warning(tmp_path):
    with TestClient(create_app(settings(tmp_path, curve_points=3))) as client:
        ds = upload(client)
        body = {"model": "tiny", "dataset_id": ds["id"], "method": "eap-ig-inputs", "ablation": "zero"}
        refused = client.post("/api/runs", json=body)  # the upload loaded the model: refused at once
        assert refused.status_code == 422 and refused.json()["detail"]["field"] == "method"
        assert "ill-defined" in refused.json()["detail"]["message"]
        assert not [r for r in client.get("/api/runs").json() if r["method"] == "eap-ig-inputs"]
        client.app.state.ctx.engine.models._models.clear()  # not loaded (e.g. after a restart): the job refuses it
        bad = wait(client, start_run(client, ds["id"], method="eap-ig-inputs", ablation="zero")["id"])
        assert bad["status"] == "failed" and "ill-defined" in bad["error"] and "eap-ig-inputs" in bad["error"]
        ok = wait(client, start_run(client, ds["id"], method="eap-ig-inputs", ablation="mean")["id"])
        assert ok["status"] == "done" and any("α = 0 end" in w for w in ok["warnings"])
        relp = wait(client, start_run(client, ds["id"], method="relp")["id"])
        assert relp["status"] == "done" and relp["method"] == "relp"

"""MIB's submission files: EAP-IG's layout, rebuilt here by hand from its Graph.from_model rules."""
import io
import json
from pathlib import Path

import pytest
import torch
from api_support import finished_run, settings
from conftest import random_pairs, tiny_model
from fastapi.testclient import TestClient

import edgewise as ew
from edgewise import cli
from edgewise.server import create_app


def eapig_layout(n_layers, n_heads, parallel=False):
    """EAP-IG's (src_nodes, dst_nodes, real edges as (src, dst) names) for a model with MLPs: sources in
    forward order; an attention input of layer L sees every source before layer L, an MLP also its
    own layer's heads (unless parallel), the logits every source."""
    src, dst, real = ["input"], [], set()
    for layer in range(n_layers):
        before = list(src)
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        for letter in "qkv":
            for h in heads:
                dst.append(f"{h}<{letter}>")
                real |= {(s, f"{h}<{letter}>") for s in before}
        dst.append(f"m{layer}")
        real |= {(s, f"m{layer}") for s in before + ([] if parallel else heads)}
        src += heads + [f"m{layer}"]
    dst.append("logits")
    real |= {(s, "logits") for s in src}
    return src, dst, real


def scored(model, n_pairs=3):
    pairs = random_pairs(model, n=n_pairs)
    return ew.attribute(model, pairs, method="eap", batch_size=3)


@pytest.mark.parametrize("kw", [{}, {"parallel": True}])
def test_pt_file_is_eapig_layout_with_mib_sign(tmp_path, kw):
    model = tiny_model(**kw)
    res = scored(model)
    keep = res.circuit(top_k=7).in_graph
    path = ew.write_mib(tmp_path / "importances.pt", res.graph, res.scores, keep)
    d = torch.load(path, weights_only=True)  # plain tensors, lists and dicts only
    assert set(d) == {"cfg", "src_nodes", "dst_nodes", "edges_scores", "edges_in_graph", "nodes_in_graph"}
    src, dst, real = eapig_layout(model.cfg.n_layers, model.cfg.n_heads, **kw)
    assert d["src_nodes"] == src and d["dst_nodes"] == dst
    assert d["cfg"] == {"n_layers": 3, "n_heads": 2, "parallel_attn_mlp": kw.get("parallel", False), "d_model": 16}
    assert d["edges_scores"].shape == d["edges_in_graph"].shape == (len(src), len(dst))
    assert d["edges_scores"].dtype == torch.float32 and d["nodes_in_graph"].shape == (len(src),)
    want = torch.zeros(len(src), len(dst))
    kept = torch.zeros(len(src), len(dst), dtype=torch.bool)
    kept_names = set(res.circuit(top_k=7).edges)
    for name, score in zip(res.edges, res.scores.tolist()):
        s, t = name.split("->")
        assert (s, t) in real, name
        want[src.index(s), dst.index(t)] = -score  # MIB attributes the loss, −metric
        kept[src.index(s), dst.index(t)] = name in kept_names
    assert len(res.edges) == len(real)
    assert torch.equal(d["edges_scores"], want) and torch.equal(d["edges_in_graph"], kept)
    on = {node for n in kept_names for node in (n.split("->")[0], n.split("->")[1].split("<")[0])}
    assert [src[i] for i in d["nodes_in_graph"].nonzero().flatten().tolist()] == [s for s in src if s in on]


def test_attention_only_models_get_mlps_with_zero_scores():
    model = tiny_model(attn_only=True)
    res = scored(model)
    d = torch.load(io.BytesIO(ew.mib_bytes(res.graph, res.scores, fmt="pt")), weights_only=True)
    src, dst, _ = eapig_layout(3, 2)
    assert d["src_nodes"] == src and d["dst_nodes"] == dst and d["cfg"]["attn_only"] is True
    mlp_rows = [i for i, n in enumerate(src) if n.startswith("m")]
    mlp_cols = [i for i, n in enumerate(dst) if n.startswith("m")]
    assert d["edges_scores"][mlp_rows].abs().sum() == 0 and d["edges_scores"][:, mlp_cols].abs().sum() == 0
    assert d["edges_scores"].abs().sum() == pytest.approx(res.scores.abs().sum().item(), rel=1e-5)
    assert not d["edges_in_graph"].any()  # importances: nothing selected


def test_json_file_is_eapig_to_json_and_reads_back(tmp_path):
    model = tiny_model()
    res = scored(model)
    keep = res.circuit(top_k=5).in_graph
    path = ew.write_mib(tmp_path / "importances.json", res.graph, res.scores, keep)
    d = json.loads(path.read_text())
    assert list(d) == ["cfg", "nodes", "edges"]
    src, dst, real = eapig_layout(3, 2)
    assert set(d["nodes"]) == set(src) | {"logits"}
    assert set(d["edges"]) == {f"{s}->{t}" for s, t in real}
    kept = set(res.circuit(top_k=5).edges)
    for name, score in zip(res.edges, res.scores.tolist()):
        assert d["edges"][name] == {"score": -score, "in_graph": name in kept}
    back = ew.Circuit.from_json(path.read_text())  # edgewise reads EAP-IG's format
    torch.testing.assert_close(back.scores, -res.scores.double())
    assert set(back.edges) == kept


def test_mib_order_is_edgewise_most_negative_first():
    """MIB's CPR ranks the file's scores high to low: the same edges ew.mib_scores puts first."""
    model = tiny_model()
    res = scored(model)
    d = torch.load(io.BytesIO(ew.mib_bytes(res.graph, res.scores, fmt="pt")), weights_only=True)
    top_file = torch.topk(d["edges_scores"].flatten(), 5).values
    top_ours = -res.scores[ew.circuit.rank_edges(res.scores, signed=True)[:5]].float()
    assert top_ours.min() > 0 and torch.equal(top_file, top_ours)


def test_bad_scores_and_paths_are_named(tmp_path):
    model = tiny_model()
    res = scored(model)
    bad = res.scores.clone()
    bad[3] = float("nan")
    with pytest.raises(ValueError, match=res.edges[3].replace("<", r"\<").replace(">", r"\>").replace(".", r"\.")):
        ew.mib_bytes(res.graph, bad)
    with pytest.raises(ValueError, match="entries"):
        ew.mib_bytes(res.graph, res.scores[:-1])
    with pytest.raises(ValueError, match=r"\.json or \.pt"):
        ew.write_mib(tmp_path / "importances.csv", res.graph, res.scores)
    with pytest.raises(ValueError, match="unknown MIB format"):
        ew.mib_bytes(res.graph, res.scores, fmt="npz")


def test_cli_writes_mib_files(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    src = Path(ew.__file__).resolve().parent / "zoo" / "interp-lookup" / "pairs.jsonl"
    pairs.write_text("".join(src.read_text().splitlines(True)[:4]))
    out, pt = tmp_path / "c.json", tmp_path / "ioi_interp" / "importances.pt"  # the folder is made: MIB's layout
    assert cli.main(["attribute", "--model", "interp-lookup", "--pairs", str(pairs), "--out", str(out), "--method",
                     "relp", "--top-k", "6", "--no-faithfulness", "--mib", str(pt), "--device", "cpu"]) == 0
    circuit = ew.Circuit.from_json(out.read_text())
    d = torch.load(pt, weights_only=True)
    assert "MIB importances" in capsys.readouterr().out and not d["edges_in_graph"].any()
    assert d["edges_scores"].abs().sum() == pytest.approx(circuit.scores.abs().sum().item(), rel=1e-5)
    back = tmp_path / "importances.json"
    assert cli.main(["mib-export", "--circuit", str(out), "--out", str(back)]) == 0
    j = json.loads(back.read_text())
    assert sum(e["in_graph"] for e in j["edges"].values()) == 6  # the circuit's selection carries over
    for name, score in zip(circuit.graph.edge_names, circuit.scores.tolist()):
        assert j["edges"][name]["score"] == -score
    assert cli.main(["mib-export", "--circuit", str(out), "--out", str(tmp_path / "x.npz")]) == 2
    assert ".json or .pt" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert cli.main(["mib-export", "--circuit", str(out), "--out", str(tmp_path / "file" / "importances.pt")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_api_exports_a_run(tmp_path):
    with TestClient(create_app(settings(tmp_path, curve_points=3))) as client:
        run = finished_run(client, method="relp", batch_size=4)
        edges = {e["name"]: e["score"] for e in client.get(f"/api/runs/{run['id']}/edges").json()["edges"]}
        r = client.get(f"/api/runs/{run['id']}/export/mib")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert f'importances-{run["id"]}.json' in r.headers["content-disposition"]
        j = r.json()
        assert {n: e["score"] for n, e in j["edges"].items()} == {n: -s for n, s in edges.items()}
        r = client.get(f"/api/runs/{run['id']}/export/mib?format=pt")
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        d = torch.load(io.BytesIO(r.content), weights_only=True)
        src, dst, _ = eapig_layout(run["cfg"]["n_layers"], run["cfg"]["n_heads"])
        assert d["src_nodes"] == src and d["dst_nodes"] == dst
        for name, score in edges.items():
            s, t = name.split("->")
            assert d["edges_scores"][src.index(s), dst.index(t)].item() == pytest.approx(-score, rel=1e-6, abs=1e-9)
        r = client.get(f"/api/runs/{run['id']}/export/mib?format=csv")
        assert r.status_code == 422 and r.json()["detail"]["field"] == "format"
        assert client.get("/api/runs/nope/export/mib").status_code == 404

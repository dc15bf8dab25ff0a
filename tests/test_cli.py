"""The `edgewise` command: attribute, evaluate, bench, serve (on the bundled zoo), and its errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_support import free_port, stop_process, wait_healthy

import edgewise as ew
from edgewise import cli

ZOO = Path(ew.__file__).resolve().parent / "zoo"
needs_zoo = pytest.mark.skipif(not (ZOO / "toy-induction" / "pairs.jsonl").exists(), reason="zoo not built")


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join((ZOO / "toy-induction" / "pairs.jsonl").read_text().splitlines(True)[:6]))
    return path


def run_cli(*argv):
    return cli.main([str(a) for a in argv])


@needs_zoo
def test_attribute_writes_the_top_k_circuit_with_engine_scores(tmp_path, pairs_file, capsys):
    out = tmp_path / "c.json"
    assert run_cli("attribute", "--model", "toy-induction", "--pairs", pairs_file, "--top-k", 4, "--out", out,
                   "--batch-size", 4, "--device", "cpu") == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "4 of 29 edges" in captured.out
    assert "eap on 6 pairs" in captured.err  # the progress bar
    d = json.loads(out.read_text())
    assert d["model"] == "toy-induction" and d["method"] == "eap" and d["selection"] == {"top_k": 4}
    assert sum(e["in_graph"] for e in d["edges"].values()) == 4 and "normalized" in d["faithfulness"]
    model = ew.load_model("toy-induction", device="cpu")
    res = ew.attribute(model, ew.PromptPairs.from_file(model, pairs_file), batch_size=4)
    for name, score in zip(res.edges, res.scores.tolist()):
        assert d["edges"][name]["score"] == pytest.approx(score, rel=1e-4, abs=1e-7)

    assert run_cli("evaluate", "--model", "toy-induction", "--pairs", pairs_file, "--circuit", out) == 0
    f = json.loads(capsys.readouterr().out)
    want = ew.evaluate(model, ew.PromptPairs.from_file(model, pairs_file), ew.Circuit.from_json(out.read_text()))
    assert f["n_edges"] == 4 and f["metric_circuit"] == pytest.approx(want.metric_circuit, abs=1e-5)
    assert f["normalized"] == pytest.approx(d["faithfulness"]["normalized"], abs=1e-5)


@needs_zoo
def test_attribute_a_bundled_task_with_min_abs_score(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert run_cli("attribute", "--task", "tracr-proportion", "--min-abs-score", 1e-6, "--out", out,
                   "--no-faithfulness", "--device", "cpu") == 0
    d = json.loads(out.read_text())
    assert d["metric"] == "tracr_proportion" and d["selection"] == {"min_abs_score": 1e-6}
    assert "faithfulness" not in d
    assert all(e["in_graph"] == (abs(e["score"]) >= 1e-6) for e in d["edges"].values())


@needs_zoo
@pytest.mark.parametrize("argv, words", [
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--model", "toy-induction", "--method", "magic"], "unknown method 'magic'"),
    (["--model", "toy-induction", "--metric", "magic"], "unknown metric 'magic'"),
    (["--task", "nope"], "unknown task 'nope'"),
    ([], "give --model and --pairs, or --task"),
])
def test_attribute_errors_exit_2_with_a_message(tmp_path, pairs_file, capsys, argv, words):
    base = ["attribute", "--out", tmp_path / "x.json", "--device", "cpu"]
    if argv and argv[0] == "--model":
        base += ["--pairs", pairs_file]
    assert run_cli(*base, *argv) == 2
    err = capsys.readouterr().err
    assert "edgewise: error:" in err and words in err
    assert not (tmp_path / "x.json").exists()


@needs_zoo
def test_bad_pairs_file_names_row_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text('clean,corrupted,answer,wrong_answer\n"[0, 1, 2]","[0, 1, 3]","[4]","[5]"\n"[0, 1]","[0]","[4]","[5]"\n')
    assert run_cli("attribute", "--model", "toy-induction", "--pairs", bad, "--out", tmp_path / "x.json") == 2
    err = capsys.readouterr().err
    assert 'row 2, field "corrupted"' in err and "bad.csv" in err
    assert run_cli("attribute", "--model", "toy-induction", "--pairs", tmp_path / "none.csv", "--out", "x") == 2
    assert "no pairs file" in capsys.readouterr().err
    assert run_cli("evaluate", "--model", "toy-induction", "--pairs", bad, "--circuit", tmp_path / "none.json") == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{")
    assert run_cli("evaluate", "--model", "toy-induction", "--pairs", bad, "--circuit", tmp_path / "junk.json") == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_bench_runs_the_bench_script_with_its_arguments(tmp_path, monkeypatch):
    script = tmp_path / "bench.py"
    script.write_text("import sys, json; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:])); sys.exit(3)")
    monkeypatch.setattr(cli, "BENCH", script)
    out = tmp_path / "args.json"
    assert run_cli("bench", out, "--repeats", "2") == 3
    assert json.loads(out.read_text()) == ["--repeats", "2"]
    monkeypatch.setattr(cli, "BENCH", tmp_path / "missing.py")
    assert run_cli("bench") == 2


def test_serve_defaults_to_localhost():
    args = cli.parser().parse_args(["serve"])
    assert (args.host, args.port, args.data) == ("127.0.0.1", 8000, None)


@needs_zoo
def test_edgewise_serve_process_serves_api_and_page(tmp_path):
    port = free_port()
    exe = Path(sys.executable).with_name("edgewise")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgewise.cli"]
    env = {**os.environ, "EDGEWISE_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd + ["serve", "--port", str(port), "--data", str(tmp_path / "d")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        assert httpx.get(f"{base}/api/health").json()["device"] == "cpu"
        names = {m["name"] for m in httpx.get(f"{base}/api/models").json()}
        assert {"toy-induction", "tracr-reverse"} <= names
        page = httpx.get(f"{base}/")
        front = Path(cli.__file__).resolve().parents[2] / "frontend" / "index.html"
        assert page.status_code == (200 if front.exists() else 404)
        assert (tmp_path / "d" / "edgewise.sqlite3").exists()
    finally:
        stop_process(proc)

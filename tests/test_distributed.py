"""Sharded on Ray actors = in-process: scores of every method, mean ablation, the curve, faithfulness;
a killed actor's shard is retried once (a second death fails the run); a cancel reaches every actor.
One local cluster of 2 CPUs for all Ray tests (conftest.ray_cluster); every wait has a deadline."""
import json
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

import torch  # noqa: E402
from conftest import random_pairs  # noqa: E402
from hf_checkpoints import write_checkpoint  # noqa: E402
from ray_support import SLOW, kill_busy_actor, rel_err, statuses, wait_idle  # noqa: E402

import edgewise as ew  # noqa: E402
from edgewise import cli  # noqa: E402
from edgewise import distributed as D  # noqa: E402
from edgewise.shards import ShardLost, plan  # noqa: E402

F64 = torch.float64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random 2-layer GPT-2 checkpoint folder: actors load it by path, the test in-process, both float64."""
    return write_checkpoint("gpt2", tmp_path_factory.mktemp("ray") / "gpt2")


@pytest.fixture(scope="module")
def local(checkpoint):
    model = ew.load_model(str(checkpoint), dtype=F64)
    # 21 pairs of 4 lengths, batches of 2: 11 batches (the last holds 1) cut into 8 shards of 1-2 batches
    return model, random_pairs(model, n=21, lengths=(5, 7, 4, 6), seed=3)


def test_plan_cuts_whole_batches_in_order():
    sizes = [2] * 10 + [1]
    shards = plan(list(range(11)), sizes, workers=2)
    assert [x for s in shards for x in s.work] == list(range(11))  # every batch once, in order
    assert len(shards) == 8 and {len(s.work) for s in shards} == {1, 2} and sum(s.n_pairs for s in shards) == 21
    assert [len(s.work) for s in plan(list(range(3)), [4, 4, 1], workers=5)] == [1, 1, 1]  # more workers than batches


def test_one_actor_per_gpu_else_cpu_actors():
    """The actor shape from the cluster's resources (no GPU here to start one on)."""
    assert D.actor_shape({"CPU": 16.0, "GPU": 4.0}) == (("gpu", 1), {"num_gpus": 1, "num_cpus": 1}, 4)
    assert D.actor_shape({"CPU": 2.0}) == (("cpu", 1.0), {"num_cpus": 1.0}, 2)
    assert D.actor_shape({"CPU": 8.0, "GPU": 0.5}, cpus_per_worker=2) == (("cpu", 2), {"num_cpus": 2}, 4)


@pytest.mark.parametrize("method,ablation", [("eap", "resample"), ("eap-ig-inputs", "resample"),
                                             ("exact", "resample"), ("eap", "mean")])
def test_sharded_scores_equal_in_process(ray_cluster, checkpoint, local, method, ablation):
    model, pairs = local
    expected = ew.attribute(model, pairs, method=method, ablation=ablation, batch_size=2, ig_steps=3)
    before = {s["pid"]: s["tasks"] for s in statuses(D.get_pool())} if D._POOLS else {}
    seen = []
    res = D.attribute(str(checkpoint), pairs, method, batch_size=2, ablation=ablation, ig_steps=3, workers=2,
                      dtype=F64, progress=seen.append)
    assert res.matrix.dtype == F64 and res.edges == expected.edges and res.n_pairs == 21
    assert rel_err(res.matrix, expected.matrix) <= 1e-10
    assert res.matrix.abs().max() > 0
    assert seen and seen == sorted(seen) and seen[-1] == 1.0  # one progress, over every actor, to the end
    after = statuses(D.get_pool())
    assert sum(s["tasks"] - before.get(s["pid"], 0) > 0 for s in after) == 2  # both actors took shards


def test_sharded_runs_refuse_and_warn_as_in_process(ray_cluster, checkpoint, local):
    """The driver holds only the model's name: the actors' model decides, as attribute's _check does."""
    model, pairs = local
    with pytest.raises(ValueError, match="ill-defined") as here:
        ew.attribute(model, pairs, method="clean-corrupted", ablation="zero")
    with pytest.raises(ValueError, match="ill-defined") as there:
        D.attribute(str(checkpoint), pairs, "clean-corrupted", ablation="zero", workers=2, dtype=F64)
    assert str(there.value) == str(here.value)
    with pytest.warns(UserWarning) as here_w:
        expected = ew.attribute(model, pairs, method="eap", ablation="zero", batch_size=2)
    with pytest.warns(UserWarning) as there_w:
        res = D.attribute(str(checkpoint), pairs, "eap", ablation="zero", batch_size=2, workers=2, dtype=F64)
    assert [str(w.message) for w in there_w] == [str(w.message) for w in here_w] != []
    assert res.warnings == expected.warnings and rel_err(res.matrix, expected.matrix) <= 1e-10


def test_more_workers_than_batches_and_the_public_entry_point(ray_cluster, checkpoint, local):
    model, pairs = local
    few = pairs.subset([0, 1, 2])
    expected = ew.attribute(model, few, batch_size=4)
    res = ew.attribute(D.ModelName(str(checkpoint), "float64"), few, batch_size=4, workers=2)
    assert rel_err(res.matrix, expected.matrix) <= 1e-10


def test_float32_zoo_model_by_name(ray_cluster):
    task = ew.load_task("toy-ioi")
    model = ew.load_model("toy-ioi")
    pairs = ew.PromptPairs.from_file(model, task.pairs_path).subset(range(24))
    expected = ew.attribute(model, pairs, method="eap-ig-inputs", batch_size=4)
    res = ew.attribute("toy-ioi", pairs, method="eap-ig-inputs", batch_size=4, workers=2)
    assert res.matrix.dtype == torch.float32 and rel_err(res.matrix, expected.matrix) <= 1e-5


def test_sharded_curve_and_faithfulness_equal_in_process(ray_cluster, checkpoint, local):
    model, pairs = local
    scores = ew.attribute(model, pairs, batch_size=2).scores
    for ablation in ("resample", "mean"):
        expected = ew.faithfulness_curve(model, pairs, scores, ablation=ablation, batch_size=2)
        curve = ew.faithfulness_curve(D.ModelName(str(checkpoint), "float64"), pairs, scores, ablation=ablation,
                                      batch_size=2, workers=2)
        assert [p["k"] for p in curve] == [p["k"] for p in expected]
        for got, want in zip(curve, expected):
            for key in ("metric_clean", "metric_corrupted", "metric_circuit"):
                assert got[key] == pytest.approx(want[key], rel=1e-10, abs=1e-12), (ablation, got["k"], key)
    circuit = ew.Graph.from_model(model).edge_names[:9]
    want = ew.evaluate(model, pairs, circuit, ablation="mean", batch_size=3)
    got = ew.evaluate(D.ModelName(str(checkpoint), "float64"), pairs, circuit, ablation="mean", batch_size=3, workers=2)
    assert got.n_edges == want.n_edges == 9
    assert got.normalized == pytest.approx(want.normalized, rel=1e-10)


def test_a_model_object_cannot_be_shipped(ray_cluster, local):
    model, pairs = local
    with pytest.raises(TypeError, match="cannot be shipped to Ray actors.*by name"):
        ew.attribute(model, pairs, workers=2)


def test_an_actor_error_is_the_runs_error(ray_cluster, local):
    with pytest.raises(ValueError, match="no such directory"):
        D.attribute("/no/such/checkpoint", local[1], workers=2)


def call_with_deadline(fn, timeout: float = 120.0):
    """fn() in a thread: (its result or exception); fails the test if it has not ended by the deadline."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout} s: a hang"
    return out.get("value"), out.get("error")


def killer(times: int):
    """A progress callback that SIGKILLs a computing actor, `times` times (once per shard attempt)."""
    killed: list[int] = []

    def progress(f):
        if len(killed) < times and (pid := kill_busy_actor(D.get_pool())) is not None:
            killed.append(pid)
            time.sleep(0.5)  # let Ray see the death before the next kill
    return progress, killed


def test_killed_actor_shard_is_retried_once_and_the_sum_is_whole(ray_cluster, checkpoint, local):
    model, pairs = local
    expected = ew.attribute(model, pairs, batch_size=4)
    progress, killed = killer(1)
    res, err = call_with_deadline(lambda: D.attribute(str(checkpoint), pairs, metric=SLOW, batch_size=4, workers=2,
                                                      dtype=F64, progress=progress))
    assert err is None and len(killed) == 1
    assert rel_err(res.matrix, expected.matrix) <= 1e-10  # the lost shard was computed again, not dropped
    assert killed[0] not in {s["pid"] for s in wait_idle(D.get_pool())}  # Ray restarted that actor


def test_a_shard_lost_twice_fails_the_run_clearly(ray_cluster, checkpoint, local):
    model, pairs = local
    progress, killed = killer(2)
    one_batch = pairs.subset(range(4))  # one shard: both kills hit it
    _, err = call_with_deadline(lambda: D.attribute(str(checkpoint), one_batch, metric=SLOW, batch_size=4, workers=2,
                                                    dtype=F64, progress=progress))
    assert isinstance(err, ShardLost) and "shard 1 of 1 (4 pairs) was lost 2 times" in str(err), err
    assert len(killed) == 2
    wait_idle(D.get_pool())
    res = D.attribute(str(checkpoint), one_batch, batch_size=4, workers=2, dtype=F64)  # the pool serves on
    assert rel_err(res.matrix, ew.attribute(model, one_batch, batch_size=4).matrix) <= 1e-10


class Stop(Exception):
    pass


def test_cancel_reaches_every_actor(ray_cluster, checkpoint, local):
    _, pairs = local
    pool = D.get_pool()
    wait_idle(pool)
    before = {s["pid"]: s["cancelled"] for s in statuses(pool)}

    def progress(f):  # cancel once both actors are inside a task
        if sum(s["busy"] is not None for s in statuses(pool)) == 2:
            raise Stop()

    _, err = call_with_deadline(lambda: D.attribute(str(checkpoint), pairs, metric=SLOW, batch_size=2, workers=2,
                                                    dtype=F64, progress=progress))
    assert isinstance(err, Stop)
    after = wait_idle(pool, timeout=10)
    assert all(s["busy"] is None for s in after)  # both stopped
    assert all(s["cancelled"] > before.get(s["pid"], 0) for s in after)  # each by the cancel, mid-task


def test_cli_attribute_with_workers(ray_cluster, tmp_path, capsys):
    """The circuit file of `--workers 2` holds the in-process scores and faithfulness; the pairs are
    tokenized by an actor (a bad row is named as in-process)."""
    out = tmp_path / "c.json"
    assert cli.main(["attribute", "--task", "toy-ioi", "--workers", "2", "--top-k", "10", "--batch-size", "16",
                     "--out", str(out)]) == 0
    assert "eap on 200 pairs on 2 Ray workers" in capsys.readouterr().err  # one bar for every actor
    model, task = ew.load_model("toy-ioi"), ew.load_task("toy-ioi")
    pairs = ew.PromptPairs.from_file(model, task.pairs_path)
    res = ew.attribute(model, pairs, batch_size=16)
    d = json.loads(out.read_text())
    got = torch.tensor([d["edges"][name]["score"] for name in res.edges])
    assert rel_err(got, res.scores) <= 1e-5
    assert {n for n, e in d["edges"].items() if e["in_graph"]} == set(res.circuit(top_k=10).edges)
    want = ew.evaluate(model, pairs, res.circuit(top_k=10), batch_size=16).normalized
    assert d["faithfulness"]["normalized"] == pytest.approx(want, rel=1e-5)

    bad = tmp_path / "bad.jsonl"
    rows = task.pairs_path.read_text().splitlines()[:3]
    rows[1] = json.dumps({**json.loads(rows[1]), "corrupted": "When Mary"})
    bad.write_text("\n".join(rows))
    assert cli.main(["attribute", "--model", "toy-ioi", "--pairs", str(bad), "--workers", "2", "--out",
                     str(tmp_path / "x.json")]) == 2
    assert 'row 2, field "corrupted"' in capsys.readouterr().err
    assert cli.main(["serve", "--ray-address", "nowhere"]) == 2
    assert "--ray-address='nowhere'" in capsys.readouterr().err

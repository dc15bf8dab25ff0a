"""The bundled tasks as a whole: listed with their pairs and circuits, loadable by name, small."""
import json

import pytest

import edgewise as ew
from edgewise.models import ZOO_DIR, load_model, zoo_names
from edgewise.tasks import list_tasks, load_task


def test_list_tasks():
    tasks = {t["name"]: t for t in list_tasks()}
    assert {"tracr-reverse", "tracr-proportion", "toy-induction", "toy-ioi", "interp-lookup"} <= set(tasks)
    assert tasks["tracr-reverse"]["n_pairs"] == 243 and tasks["tracr-reverse"]["has_circuit"]
    assert tasks["toy-ioi"]["metric"] == "logit_diff" and tasks["toy-ioi"]["has_circuit"]
    assert tasks["interp-lookup"]["n_pairs"] == 200 and tasks["interp-lookup"]["has_circuit"]


def test_unknown_task_names_the_bundled_ones():
    with pytest.raises(ValueError, match="tracr-reverse"):
        load_task("no-such-task")


def test_every_known_circuit_names_real_edges():
    for name in zoo_names():
        task = load_task(name)
        graph = ew.Graph.from_model(json.loads((ZOO_DIR / name / "config.json").read_text()))
        for truth, edges in task.circuits.items():
            assert set(edges) <= set(graph.edge_names), (name, truth, set(edges) - set(graph.edge_names))


def test_zoo_models_are_small_and_load_offline():
    for name in zoo_names():
        assert (ZOO_DIR / name / "model.safetensors").stat().st_size < 1.1 * 2**20, name
        model = load_model(name, device="cpu")  # conftest sets HF_HUB_OFFLINE: no hub is asked
        assert model.cfg.n_layers >= 1
    for f in ZOO_DIR.rglob("*"):
        if f.is_file():
            assert f.stat().st_size < 2**20, f

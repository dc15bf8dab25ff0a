"""Words a word-level tokenizer does not know (toy-ioi's): a warning per row and field, never silently
<unk>; an <unk> answer refused; answer == wrong_answer flagged. A byte-level BPE, whose "unk" is its
BOS/EOS token, never warns."""
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient

import edgewise as ew
from edgewise.data import PairsError
from edgewise.server import Settings, create_app

CLEAN = "Then, David and Claire went to the store. David gave a drink to"
CORRUPTED = "Then, David and Claire went to the store. John gave a drink to"


@pytest.fixture(scope="module")
def ioi():
    return ew.load_model("toy-ioi", device="cpu")


def test_unknown_words_warn_per_row_and_field(ioi):
    records = [{"clean": CLEAN, "corrupted": CORRUPTED, "answer": " Claire", "wrong_answer": " David"},
               {"clean": CLEAN.replace("Claire", "Zebulon"), "corrupted": CORRUPTED.replace("Claire", "Zebulon"),
                "answer": " David", "wrong_answer": " John"}]
    pairs = ew.PromptPairs.from_records(ioi, records)
    assert pairs.warnings == ['row 2, field "clean": unknown word \'Zebulon\' became <unk>',
                              'row 2, field "corrupted": unknown word \'Zebulon\' became <unk>']
    assert ioi.tokenizer.unk_token_id in pairs.clean[1]  # the pair is kept: a warning, not a refusal


def test_an_unknown_answer_is_refused_and_equal_answers_are_flagged(ioi):
    rec = {"clean": CLEAN, "corrupted": CORRUPTED, "answer": " Zebulon", "wrong_answer": " David"}
    with pytest.raises(PairsError) as e:
        ew.PromptPairs.from_records(ioi, [rec])
    assert (e.value.row, e.value.field) == (1, "answer") and "<unk>" in str(e.value)
    same = ew.PromptPairs.from_records(ioi, [{**rec, "answer": " David"}])
    assert same.warnings == [f"row 1: answer and wrong_answer are the same token ({same.answer[0]}); "
                             "logit_diff and prob_diff are 0 for this pair"]


class BPE:
    """A byte-level BPE tokenizer's shape: its unk token is its BOS/EOS (GPT-2: id 50256)."""

    unk_token_id = bos_token_id = eos_token_id = 0
    pad_token_id = None


def test_a_bpe_tokenizer_whose_unk_is_its_bos_never_warns():
    cfg = SimpleNamespace(d_vocab=10, n_ctx=8, default_prepend_bos=True)
    ids = {"a b": [0, 3, 4], "a c": [0, 3, 5]}
    model = SimpleNamespace(cfg=cfg, tokenizer=BPE(),
                            to_tokens=lambda text, prepend_bos, truncate: torch.tensor([ids[text]]))
    pairs = ew.PromptPairs.from_records(model, [{"clean": "a b", "corrupted": "a c"}])
    assert pairs.warnings == [] and pairs.clean == [[0, 3, 4]]


def test_the_upload_reports_them(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, device="cpu", allowed_hosts=("testserver",)))) as c:
        ok = {"clean": CLEAN, "corrupted": CORRUPTED, "answer": " Claire", "wrong_answer": " David"}
        odd = {**ok, "clean": CLEAN.replace("store", "bazaar"), "corrupted": CORRUPTED.replace("store", "bazaar")}
        r = c.post("/api/datasets", json={"model": "toy-ioi", "pairs": [ok, odd]})
        assert r.status_code == 201 and r.json()["warnings"][0].startswith('row 2, field "clean": unknown word')
        r = c.post("/api/datasets", json={"model": "toy-ioi", "pairs": [ok, {**ok, "wrong_answer": " Zebulon"}]})
        assert r.status_code == 422 and (r.json()["detail"]["row"], r.json()["detail"]["field"]) == (2, "wrong_answer")

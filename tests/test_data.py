"""Prompt pairs: every format parses to the same pairs; every rejection names row and field."""
import json

import pytest
import torch
from conftest import tiny_model
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import edgewise as ew
from edgewise.data import PairsError

WORDS = ["<unk>", "When", "Mary", "and", "John", "went", "to", "the", "store", ",", "gave", "a", "drink",
         "Anna", "Mary-Jo"]


@pytest.fixture(scope="module")
def text_model():
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model = tiny_model(d_vocab=len(WORDS), n_ctx=16)
    model.set_tokenizer(PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<unk>"),
                        default_padding_side="right")
    return model


ROWS = [("When Mary and John went to the store , John gave a drink to", "When Mary and John went to the store , Anna gave a drink to", " Mary", " John"),
        ("When John and Mary went to the store , Mary gave a drink to", "When John and Mary went to the store , Anna gave a drink to", " John", " Mary")]


def as_csv(header=("clean", "corrupted", "answer", "wrong_answer"), rows=ROWS):
    return ",".join(header) + "\n" + "\n".join(",".join(f'"{c}"' for c in r) for r in rows)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json-list", "json-pairs", "auto-circuit", "aliases"])
def test_formats_parse_to_the_same_pairs(text_model, fmt):
    recs = [dict(zip(("clean", "corrupted", "answer", "wrong_answer"), r)) for r in ROWS]
    data, name = {
        "csv": (as_csv(), "p.csv"),
        "jsonl": ("\n".join(json.dumps(r) for r in recs), "p.jsonl"),
        "json-list": (json.dumps(recs), "p.json"),
        "json-pairs": (json.dumps({"pairs": recs}), "p.json"),
        "auto-circuit": (json.dumps({"prompts": [{"clean": r[0], "corrupt": r[1], "answers": [r[2]], "wrong_answers": [r[3]]} for r in ROWS]}), "x.json"),
        "aliases": (as_csv(("clean", "corrupt", "label", "distractor")), "p.csv"),
    }[fmt]
    pairs = ew.PromptPairs.from_file(text_model, data.encode(), filename=name)
    assert len(pairs) == 2 and pairs.answer == [2, 4] and pairs.wrong_answer == [4, 2]
    assert pairs.clean[0][:4] == [1, 2, 3, 4] and len(pairs.clean[0]) == len(pairs.corrupted[0]) == 14
    ref = ew.PromptPairs.from_records(text_model, recs)
    assert pairs.sha256() == ref.sha256()


def test_format_is_sniffed_without_extension(text_model, tmp_path):
    path = tmp_path / "pairs"
    path.write_text(as_csv())
    assert len(ew.PromptPairs.from_file(text_model, str(path))) == 2


@pytest.mark.parametrize("data,name,row,field,msg", [
    (b"", "p.csv", None, None, "empty"),
    (b"\xff\xfeclean", "p.csv", None, None, "not UTF-8"),
    (b'[{"clean": "Mary"', "p.json", None, None, "invalid JSON"),
    (b'{"clean": "Mary", "corrupted": "John", "answer": " Mary", "wrong_answer": " John"}\n{oops}', "p.jsonl", 2, None, "invalid JSON on line 2"),
    (b'{"x": 1}', "p.json", None, None, '"pairs"'),
    (as_csv(("clean", "answer", "wrong_answer"), [r[:1] + r[2:] for r in ROWS]).encode(), "p.csv", 1, "corrupted", "missing"),
    (as_csv(rows=[ROWS[0], (ROWS[1][0], "When John and Mary went", " John", " Mary")]).encode(), "p.csv", 2, "corrupted", "5 tokens, clean has 14"),
    (as_csv(rows=[ROWS[0], (ROWS[1][0], ROWS[1][1], " John Mary", " Mary")]).encode(), "p.csv", 2, "answer", "2 tokens"),
    (as_csv(rows=[(ROWS[0][0], "", " Mary", " John")]).encode(), "p.csv", 1, "corrupted", "empty"),
    (b"clean,corrupted,answer,wrong_answer\nMary,John,Mary,John,extra\n", "p.csv", 1, None, "header has 4"),
    (b'[{"clean": "Mary", "corrupted": "John", "answer": " Mary"}]', "p.json", 1, "wrong_answer", "missing"),
    (b'[{"clean": [1, 2], "corrupted": [1, 99], "answer": 2, "wrong_answer": 3}]', "p.json", 1, "corrupted", "outside the vocabulary"),
    (b'[{"clean": [1, 2], "corrupted": [1, 2.5], "answer": 2, "wrong_answer": 3}]', "p.json", 1, "corrupted", "integers"),
    (b'[{"clean": "Mary", "corrupted": "John", "answers": [" Mary", " John"], "wrong_answers": [" John"]}]', "p.json", 1, "answer", "2 answers"),
    (b'["Mary"]', "p.json", 1, None, "expected an object"),
    (as_csv(rows=[(" ".join(["Mary"] * 17), " ".join(["John"] * 17), " Mary", " John")]).encode(), "p.csv", 1, "clean", "17 tokens, the model's context is 16"),
])
def test_rejections_name_row_and_field(text_model, data, name, row, field, msg):
    with pytest.raises(PairsError, match=msg) as info:
        ew.PromptPairs.from_file(text_model, data, filename=name)
    assert (info.value.row, info.value.field) == (row, field)
    if row:
        assert str(info.value).startswith(f"row {row}")


def test_token_ids_need_no_tokenizer_and_text_needs_one():
    model = tiny_model()
    pairs = ew.PromptPairs.from_records(model, [{"clean": [1, 2, 3], "corrupted": [1, 4, 3], "answer": 5, "wrong_answer": 6}])
    assert pairs.clean == [[1, 2, 3]] and pairs.answer == [5]
    csv = b'clean,corrupted,answer,wrong_answer\n"[1, 2]","[1, 3]",4,5\n'
    with pytest.raises(PairsError, match="no tokenizer") as info:
        ew.PromptPairs.from_file(model, csv, filename="p.csv")  # "4" is text, not an id
    assert info.value.field == "answer"
    with pytest.raises(PairsError, match="context is 12"):
        ew.PromptPairs.from_records(model, [{"clean": [1] * 13, "corrupted": [2] * 13, "answer": 1, "wrong_answer": 2}])


def test_pairs_without_answers_and_warnings():
    model = tiny_model()
    pairs = ew.PromptPairs.from_records(model, [{"clean": [1, 2], "corrupted": [1, 2]}, {"clean": [3], "corrupted": [4]}])
    assert pairs.answer is None and "row 1" in pairs.warnings[0]
    with pytest.raises(PairsError, match="earlier rows have none"):
        ew.PromptPairs.from_records(model, [{"clean": [1], "corrupted": [2]}, {"clean": [3], "corrupted": [4], "answer": 1, "wrong_answer": 2}])


def test_batches_pad_right_and_mark_last_positions():
    model = tiny_model()
    recs = [{"clean": [1] * n, "corrupted": [2] * n, "answer": 1, "wrong_answer": 2} for n in (3, 5, 3, 4)]
    pairs = ew.PromptPairs.from_records(model, recs)
    batches = list(pairs.batches(3))
    assert [len(b) for b in batches] == [3, 1]
    b = batches[0]
    assert b.clean.shape == (3, 4) and b.last.tolist() == [2, 2, 3] and b.index.tolist() == [0, 2, 3]
    assert b.mask.sum(1).tolist() == [3, 3, 4]
    assert [len(b) for b in pairs.batches(3, split_lengths=True)] == [2, 1, 1]
    assert pairs.n_batches(3, split_lengths=True) == 3 and pairs.n_batches(3) == 2
    assert torch.equal(b.corrupted[0, :3], torch.tensor([2, 2, 2]))

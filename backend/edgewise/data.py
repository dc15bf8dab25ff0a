"""Prompt pairs: parse CSV / JSON / JSONL, validate against a model, tokenize, and batch.

A record is {"clean", "corrupted", "answer", "wrong_answer"}; each text field may instead be a list
of token ids. Aliases: corrupt → corrupted; label, correct → answer; incorrect, distractor →
wrong_answer; auto-circuit's {"prompts": [{"clean", "corrupt", "answers", "wrong_answers"}]} too.
Every rejection is a `PairsError` naming the row (1-based, over records) and the field.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import torch

FIELDS = ("clean", "corrupted", "answer", "wrong_answer")
ALIASES = {"corrupt": "corrupted", "label": "answer", "correct": "answer", "answers": "answer",
           "incorrect": "wrong_answer", "distractor": "wrong_answer", "wrong_answers": "wrong_answer"}


class PairsError(ValueError):
    """A prompt-pair file or record that cannot be used; `row` and `field` say where (None if global)."""

    def __init__(self, message: str, row: int | None = None, field: str | None = None):
        self.row, self.field, self.detail = row, field, message
        where = ", ".join(p for p in (f"row {row}" if row is not None else "",
                                      f'field "{field}"' if field else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


# ---------------------------------------------------------------- parsing (no model needed)
def parse_records(data: bytes | str | BinaryIO, filename: str = "", max_records: int | None = None) -> list[dict]:
    """Records from a CSV, JSON or JSONL file: its bytes, its text, or a binary file object, which is
    read as a stream (CSV and JSONL are never held whole in memory, and reading stops at record
    max_records + 1). The format comes from the name, else from the first lines."""
    lines = _lines(data)
    head: list[str] = []  # up to the second non-blank line: enough to tell the format
    for line in lines:
        if head or line.strip():
            head.append(line)
            if sum(bool(h.strip()) for h in head) == 2:
                break
    nonblank = [h.lstrip() for h in head if h.strip()]
    if not nonblank:
        raise PairsError("file is empty")
    lines = itertools.chain(head, lines)
    first = nonblank[0]
    ext = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if ext == "csv" or (ext not in ("json", "jsonl") and first[0] not in "[{"):
        return _capped(_parse_csv(lines), max_records)
    if ext == "jsonl" or (ext != "json" and first[0] == "{" and nonblank[1:2] and nonblank[1].startswith("{")):
        return _capped(_parse_jsonl(lines), max_records)
    text = "".join(lines)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise PairsError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise PairsError("the JSON nests too deeply") from None
    return _records_from_json(obj)


def _lines(data) -> Iterator[str]:
    """Lines of UTF-8 text (a BOM dropped, line ends kept for the CSV reader)."""
    if isinstance(data, str):
        stream = io.StringIO(data, newline="")
    else:
        raw = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        stream = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    lineno = 0
    try:
        for lineno, line in enumerate(stream, 1):
            yield line
    except UnicodeDecodeError as e:
        raise PairsError(f"file is not UTF-8 text (line {lineno + 1}: {e.reason})") from None
    finally:
        if isinstance(stream, io.TextIOWrapper):
            stream.detach()  # the caller owns the file


def _capped(records: Iterator, max_records: int | None) -> list:
    out = []
    for rec in records:
        if max_records is not None and len(out) == max_records:
            raise PairsError(f"more than {max_records} pairs; the limit is {max_records}", row=max_records + 1)
        out.append(rec)
    return out


def _parse_csv(lines: Iterator[str]) -> Iterator[dict]:
    i = 0
    try:
        for i, row in enumerate(csv.DictReader(lines), 1):
            if None in row:  # more cells than header columns
                raise PairsError(f"{len(row) - 1 + len(row[None])} cells, the header has {len(row) - 1} columns", row=i)
            yield row
    except csv.Error as e:
        raise PairsError(f"malformed CSV: {e}", row=i + 1) from None


def _parse_jsonl(lines: Iterator[str]) -> Iterator:
    row = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row += 1
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise PairsError(f"invalid JSON on line {lineno}, column {e.colno}: {e.msg}", row=row) from None
        except RecursionError:
            raise PairsError(f"line {lineno}: the JSON nests too deeply", row=row) from None


def _records_from_json(obj) -> list[dict]:
    if isinstance(obj, dict):
        for key in ("pairs", "prompts"):
            if isinstance(obj.get(key), list):
                return obj[key]
        raise PairsError('JSON object must hold a list under "pairs" or "prompts"')
    if isinstance(obj, list):
        return obj
    raise PairsError("JSON must be a list of records or an object with a \"pairs\" list")


def normalize_record(rec, row: int) -> dict:
    """Map aliases to the four field names; check required fields are present."""
    if not isinstance(rec, dict):
        raise PairsError(f"expected an object with fields {', '.join(FIELDS)}, got {type(rec).__name__}", row=row)
    out = {}
    for key, value in rec.items():
        name = ALIASES.get(key.strip().lower() if isinstance(key, str) else key, key)
        if isinstance(name, str):
            name = name.strip().lower()
        if name in FIELDS:
            if key in ("answers", "wrong_answers") or (name in ("answer", "wrong_answer") and isinstance(value, list)
                                                       and value and not isinstance(value[0], int)):
                value = _single_answer(value, row, name)
            out[name] = value
    for name in ("clean", "corrupted"):
        if out.get(name) in (None, "", []):
            raise PairsError("missing" if name not in out else "empty", row=row, field=name)
    return out


def _single_answer(value, row: int, field: str):
    """auto-circuit gives lists of answers; edgewise scores one answer per pair."""
    if not isinstance(value, list) or len(value) == 0:
        raise PairsError("expected a non-empty list", row=row, field=field)
    if len(value) > 1:
        raise PairsError(f"{len(value)} answers given; edgewise uses exactly one per pair", row=row, field=field)
    return value[0]


# ---------------------------------------------------------------- tokenized pairs
@dataclass
class Batch:
    """One batch of pairs, right-padded to the longest prompt. Shapes: [B, P] and [B]."""

    clean: torch.Tensor
    corrupted: torch.Tensor
    answer: torch.Tensor | None
    wrong_answer: torch.Tensor | None
    last: torch.Tensor  # index of each pair's last real position
    mask: torch.Tensor  # [B, P] True at real positions
    index: torch.Tensor  # pair indices into the PromptPairs
    clean_logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.clean.shape[0]


class PromptPairs:
    """Tokenized clean/corrupted prompt pairs with single-token answers."""

    def __init__(self, clean, corrupted, answer, wrong_answer, warnings=(), records=None):
        self.clean: list[list[int]] = clean
        self.corrupted: list[list[int]] = corrupted
        self.answer: list[int] | None = answer
        self.wrong_answer: list[int] | None = wrong_answer
        self.warnings: list[str] = list(warnings)
        self.records: list[dict] = records or []

    def __len__(self) -> int:
        return len(self.clean)

    @classmethod
    def from_records(cls, model, records, *, max_pairs: int | None = None) -> "PromptPairs":
        """Validate and tokenize records against `model` (a HookedTransformer)."""
        records = list(records)
        if not records:
            raise PairsError("no prompt pairs given")
        if max_pairs is not None and len(records) > max_pairs:
            raise PairsError(f"{len(records)} pairs, the limit is {max_pairs}")
        tok = _Tokenizer(model)
        clean, corrupted, answer, wrong, kept, warnings = [], [], [], [], [], []
        has_answers = None
        for row, raw in enumerate(records, 1):
            rec = normalize_record(raw, row)
            c = tok.prompt(rec["clean"], row, "clean")
            x = tok.prompt(rec["corrupted"], row, "corrupted")
            if len(c) != len(x):
                raise PairsError(f"{len(x)} tokens, clean has {len(c)}; a pair's prompts must have equal length",
                                 row=row, field="corrupted")
            present = rec.get("answer") not in (None, "")
            if has_answers is None:
                has_answers = present
            elif present != has_answers:
                raise PairsError("missing, but earlier rows have answers" if has_answers else
                                 "given, but earlier rows have none", row=row, field="answer")
            if has_answers:
                if rec.get("wrong_answer") in (None, ""):
                    raise PairsError("missing", row=row, field="wrong_answer")
                answer.append(tok.answer(rec["answer"], row, "answer"))
                wrong.append(tok.answer(rec["wrong_answer"], row, "wrong_answer"))
                if answer[-1] == wrong[-1]:
                    warnings.append(f"row {row}: answer and wrong_answer are the same token ({answer[-1]}); "
                                    "logit_diff and prob_diff are 0 for this pair")
            if c == x:
                warnings.append(f"row {row}: clean and corrupted prompts are identical (this pair scores 0)")
            clean.append(c)
            corrupted.append(x)
            kept.append(rec)
        return cls(clean, corrupted, answer if has_answers else None, wrong if has_answers else None,
                   tok.warnings + warnings, kept)

    @classmethod
    def from_file(cls, model, path_or_data, filename: str | None = None, **kw) -> "PromptPairs":
        """From a path, or from bytes/str with `filename` telling the format."""
        if isinstance(path_or_data, (str, Path)) and filename is None:
            path = Path(path_or_data)
            return cls.from_records(model, parse_records(path.read_bytes(), path.name), **kw)
        return cls.from_records(model, parse_records(path_or_data, filename or ""), **kw)

    def sha256(self) -> str:
        """Content hash of the tokenized pairs (same pairs, same hash, whatever the file format)."""
        blob = json.dumps([self.clean, self.corrupted, self.answer, self.wrong_answer], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def subset(self, indices) -> "PromptPairs":
        pick = lambda xs: None if xs is None else [xs[i] for i in indices]  # noqa: E731
        return PromptPairs(pick(self.clean), pick(self.corrupted), pick(self.answer), pick(self.wrong_answer),
                           records=pick(self.records) if self.records else None)

    def _chunks(self, batch_size: int, split_lengths: bool) -> list[list[int]]:
        """Pair indices per batch: sorted by length (less padding); with `split_lengths`, one length
        per batch, since models with bidirectional attention would otherwise attend to padding."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        chunks: list[list[int]] = []
        for i in sorted(range(len(self)), key=lambda i: len(self.clean[i])):
            last = chunks[-1] if chunks else None
            if last is None or len(last) == batch_size or (
                    split_lengths and len(self.clean[i]) != len(self.clean[last[0]])):
                chunks.append([])
            chunks[-1].append(i)
        return chunks

    def batches(self, batch_size: int, device="cpu", split_lengths: bool = False):
        """Yield `Batch`es (see _chunks for the grouping)."""
        for idx in self._chunks(batch_size, split_lengths):
            yield self._batch(idx, device)

    def n_batches(self, batch_size: int, split_lengths: bool = False) -> int:
        return len(self._chunks(batch_size, split_lengths))

    def _batch(self, idx: list[int], device) -> Batch:
        lengths = torch.tensor([len(self.clean[i]) for i in idx])
        P = int(lengths.max())
        clean = torch.zeros(len(idx), P, dtype=torch.long)
        corrupted = torch.zeros_like(clean)
        for b, i in enumerate(idx):
            clean[b, : lengths[b]] = torch.tensor(self.clean[i])
            corrupted[b, : lengths[b]] = torch.tensor(self.corrupted[i])
        # right padding (token 0) keeps positions 0..len-1; under causal attention it never reaches a real position
        ans = None if self.answer is None else torch.tensor([self.answer[i] for i in idx], device=device)
        wrong = None if self.wrong_answer is None else torch.tensor([self.wrong_answer[i] for i in idx], device=device)
        mask = torch.arange(P)[None, :] < lengths[:, None]
        return Batch(clean.to(device), corrupted.to(device), ans, wrong, (lengths - 1).to(device),
                     mask.to(device), torch.tensor(idx, device=device))


class _Tokenizer:
    """Text or token ids → token ids, checked against the model's vocabulary and context."""

    def __init__(self, model):
        self.model = model
        self.d_vocab = model.cfg.d_vocab
        self.n_ctx = model.cfg.n_ctx
        self.warnings: list[str] = []
        tk = model.tokenizer
        unk = getattr(tk, "unk_token_id", None)
        # a word-level tokenizer maps unknown words to <unk>; byte-level BPE never does (GPT-2's "unk"
        # is its BOS/EOS token, which prompts legitimately hold)
        specials = {getattr(tk, a, None) for a in ("bos_token_id", "eos_token_id", "pad_token_id")}
        self.unk = unk if unk is not None and unk not in specials else None

    def _ids(self, value, row: int, field: str, prepend_bos: bool) -> list[int]:
        if isinstance(value, bool):
            raise PairsError("expected text or token ids, got a boolean", row=row, field=field)
        if isinstance(value, int):
            value = [value]
        if isinstance(value, str) and value.strip().startswith("["):  # token ids written in a CSV cell
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise PairsError(f"{value!r} looks like a token-id list but is not valid JSON", row=row, field=field) from None
        if isinstance(value, list):
            if not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
                raise PairsError("token-id list must hold integers only", row=row, field=field)
            ids = list(value)
        elif isinstance(value, str):
            if self.model.tokenizer is None:
                raise PairsError("this model has no tokenizer: give token ids (a list of integers)", row=row, field=field)
            ids = self.model.to_tokens(value, prepend_bos=prepend_bos, truncate=False)[0].tolist()
            if self.unk is not None and self.unk in ids:
                words = self.unknown_words(value)
                if field in ("answer", "wrong_answer"):
                    raise PairsError(f"{value!r} is not in the model's vocabulary (it would be <unk>)", row=row,
                                     field=field)
                self.warnings.append(f'row {row}, field "{field}": unknown word{"s" * (len(words) != 1)} '
                                     f'{", ".join(repr(w) for w in words[:5])}{" …" * (len(words) > 5)} became <unk>')
        else:
            raise PairsError(f"expected text or a list of token ids, got {type(value).__name__}", row=row, field=field)
        bad = [t for t in ids if not 0 <= t < self.d_vocab]
        if bad:
            raise PairsError(f"token id {bad[0]} outside the vocabulary (0..{self.d_vocab - 1})", row=row, field=field)
        return ids

    def unknown_words(self, text: str) -> list[str]:
        """The pieces of `text` the tokenizer maps to <unk> (by its offsets, when it gives them)."""
        tk = self.model.tokenizer
        try:
            enc = tk(text, add_special_tokens=False, return_offsets_mapping=True)
            return [text[a:b] for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if t == self.unk]
        except (NotImplementedError, KeyError, TypeError, ValueError):
            return ["?"]

    def prompt(self, value, row: int, field: str) -> list[int]:
        ids = self._ids(value, row, field, prepend_bos=bool(self.model.cfg.default_prepend_bos))
        if not ids:
            raise PairsError("empty prompt", row=row, field=field)
        if len(ids) > self.n_ctx:
            raise PairsError(f"{len(ids)} tokens, the model's context is {self.n_ctx}", row=row, field=field)
        return ids

    def answer(self, value, row: int, field: str) -> int:
        ids = self._ids(value, row, field, prepend_bos=False)
        if len(ids) != 1:
            shown = ""
            if isinstance(value, str) and self.model.tokenizer is not None:
                shown = " (" + " | ".join(repr(self.model.tokenizer.decode([t])) for t in ids) + ")"
            raise PairsError(f"{value!r} is {len(ids)} tokens{shown}; answers must be a single token",
                             row=row, field=field)
        return ids[0]

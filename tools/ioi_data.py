"""toy-ioi's data: vocabulary, word-level tokenizer, IOI sentences, ABC prompt pairs.

An IOI sentence introduces two names (A and B, in either order: ABBA or BABA), repeats one of them
as the subject S of a second clause, and ends where the other one, the indirect object IO, comes:
"When Mary and John went to the store, John gave a drink to" → " Mary".

The corrupted prompt of a pair is the IOI paper's ABC distribution: the same sentence with all three
names (both first-clause names and S2) replaced by three other, distinct names, so nothing in it
says which name comes next. The fillers (place, object) stay, so the pair contrasts the names only.

Training also mixes in *scrambled* sequences (`scrambled`): random words with two names, one of them
repeated later at a random place; the target is the name that occurred once. There syntax does not
say which name is repeated, only the tokens do, so the model must detect the duplicate; the same
heads then serve the templates.
"""
from __future__ import annotations

import random

BOS, PAD, UNK, EOS = "<bos>", "<pad>", "<unk>", "<eos>"
NAMES = ["Mary", "John", "Alice", "Bob", "Kate", "Tom", "Sarah", "James", "Emma", "David", "Laura", "Mark",
         "Anna", "Paul", "Lisa", "Peter", "Rose", "Jack", "Claire", "Sam", "Julia", "Max", "Grace", "Leo",
         "Michael", "Kevin", "Eric", "Daniel", "Ryan", "Adam", "Jason", "Brian", "Scott", "Amy", "Emily",
         "Rachel", "Kelly", "Helen", "Victor", "Nora"]
PLACES = ["store", "park", "school", "office", "garden", "station", "beach", "market", "house", "library"]
OBJECTS = ["drink", "book", "ball", "letter", "gift", "key", "flower", "bag", "ring", "snack"]
# {A} {B}: the first-clause names; {S}: the repeated subject; {P} place; {O} object. S2 sits 6 to 14
# words in, after a comma, a period or "afterwards", so no one position or word marks it.
TEMPLATES = [
    "When {A} and {B} went to the {P}, {S} gave a {O} to",
    "When {A} and {B} got a {O} at the {P}, {S} decided to give it to",
    "Then, {A} and {B} went to the {P}. {S} gave a {O} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "After {A} and {B} went to the {P}, {S} gave a {O} to",
    "While {A} and {B} were working at the {P}, {S} gave a {O} to",
    "Friends {A} and {B} found a {O} at the {P}. {S} gave it to",
    "After the lunch, {A} and {B} went to the {P}. {S} gave a {O} to",
    "The {P} {A} and {B} went to had a {O}. {S} gave it to",
    "Then, {A} and {B} were thinking about going to the {P}. {S} wanted to give a {O} to",
    "While {A} and {B} were commuting to the {P}, {S} gave a {O} to",
    "When {A} and {B} arrived at the {P}, {S} handed a {O} to",
    "{A} and {B} went to the {P}. {S} gave a {O} to",
    "Yesterday {A} and {B} met at the {P}, and {S} gave a {O} to",
]
FILLER = ["the", "a", "went", "to", "at", "and", "then", "had", "got", "was", "were", "with", "it", "long",
          "afterwards", "happily", "really", "later"]


def template_words() -> list[str]:
    words = []
    for t in TEMPLATES:
        words += t.replace(",", " , ").replace(".", " . ").split()
    return [w for w in words if not w.startswith("{")] + FILLER


def build_tokenizer():
    """Word-level tokenizer (whitespace + punctuation split) with a BOS token the model prepends."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(template_words()) | set(PLACES) | set(OBJECTS)) + NAMES
    vocab = {w: i for i, w in enumerate([PAD, UNK, EOS, BOS] + list(dict.fromkeys(words)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation; " Mary" → ["Mary"]
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, eos_token=EOS,
                                   bos_token=BOS)


def ioi(rng: random.Random, names=NAMES, template: str | None = None) -> dict:
    """One IOI sentence: text (without answer), io, s, the template, the order, place and object."""
    io, s = rng.sample(names, 2)
    order = rng.choice(["ABBA", "BABA"])  # ABBA: IO first; BABA: S first
    a, b = (io, s) if order == "ABBA" else (s, io)
    t = template or rng.choice(TEMPLATES)
    fill = dict(P=rng.choice(PLACES), O=rng.choice(OBJECTS))
    return {"text": t.format(A=a, B=b, S=s, **fill), "io": io, "s": s, "order": order, "template": t,
            "fill": fill, "a": a, "b": b}


def abc_pair(rng: random.Random) -> dict:
    """A prompt pair: clean IOI sentence; corrupted = the same sentence with three fresh distinct names."""
    rec = ioi(rng)
    c1, c2, c3 = rng.sample([n for n in NAMES if n not in (rec["io"], rec["s"])], 3)
    corrupted = rec["template"].format(A=c1, B=c2, S=c3, **rec["fill"])
    return {"clean": rec["text"], "corrupted": corrupted, "answer": " " + rec["io"], "wrong_answer": " " + rec["s"],
            "order": rec["order"]}


def scrambled(rng: random.Random) -> tuple[str, str]:
    """Random words with names X, Y and X again at random places, ending in "to"; target Y."""
    x, y = rng.sample(NAMES, 2)
    n = rng.randint(8, 16)
    words = [rng.choice(FILLER + PLACES + OBJECTS) for _ in range(n)]
    i, j = sorted(rng.sample(range(n // 2), 2))       # X and Y (either order) in the first half
    k = rng.randrange(n // 2 + 1, n)                  # X again in the second half
    first, second = (x, y) if rng.random() < 0.5 else (y, x)
    words[i], words[j], words[k] = first, second, x
    return " ".join(words + ["to"]), y


def single(rng: random.Random) -> tuple[str, str]:
    """Random words with one name X somewhere in the first half, ending in "to"; target X (copying)."""
    x = rng.choice(NAMES)
    n = rng.randint(8, 16)
    words = [rng.choice(FILLER + PLACES + OBJECTS) for _ in range(n)]
    words[rng.randrange(n // 2)] = x
    return " ".join(words + ["to"]), x

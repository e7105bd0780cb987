"""Corpora, tokenizers, token-id splits, evaluation windows and synthetic passkey prompts."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# Books


def book_path(corpus_dir: str | Path, name: str) -> Path:
    """`name` is a path under the corpus folder without the .txt.gz suffix, e.g. 'shakespeare/hamlet'."""
    path = Path(corpus_dir) / f"{name}.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"book '{name}' not found: {path} does not exist")
    return path


def read_book(path: str | Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().lstrip("\ufeff")


def list_books(corpus_dir: str | Path, patterns: list[str]) -> list[str]:
    """Expand glob patterns ('shakespeare/*') into sorted book names; a pattern matching nothing is an error."""
    root = Path(corpus_dir)
    names: list[str] = []
    for pattern in patterns:
        matched = sorted(str(p.relative_to(root))[: -len(".txt.gz")] for p in root.glob(f"{pattern}.txt.gz"))
        if not matched:
            raise FileNotFoundError(f"no book in {root} matches '{pattern}'")
        names += [m for m in matched if m not in names]
    return names


# ---------------------------------------------------------------------------------------------
# Tokenizers: bytes by default (no vocabulary file, no unknown tokens), byte-level BPE as an option.


class ByteTokenizer:
    kind = "byte"
    vocab_size = 258
    bos_id = 256
    eos_id = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "byte"}) + "\n")


class BPETokenizer:
    """A `tokenizers` tokenizer: one trained here, or a pretrained model's own tokenizer.json (Llama 2, Mistral and
    Phi-3 name their document markers <s> and </s>)."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.bos_id = tokenizer.token_to_id("<s>")
        self.eos_id = tokenizer.token_to_id("</s>")
        if self.bos_id is None or self.eos_id is None:
            raise ValueError("tokenizer has no <s> and </s> tokens to mark document boundaries")

    @classmethod
    def train(cls, texts: list[str], vocab_size: int) -> "BPETokenizer":
        from tokenizers import ByteLevelBPETokenizer

        tok = ByteLevelBPETokenizer()
        tok.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=["<s>", "</s>"], show_progress=False)
        return cls(tok._tokenizer)

    def encode(self, text: str) -> list[int]:
        # A pretrained tokenizer's post-processor would add its own BOS; encode_documents places BOS and EOS itself.
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))

    def save(self, path: str | Path) -> None:
        self._tok.save(str(path))


def train_tokenizer(kind: str, texts: list[str], vocab_size: int | None = None):
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        if not vocab_size:
            raise ValueError("tokenizer kind 'bpe' needs vocab_size")
        return BPETokenizer.train(texts, vocab_size)
    raise ValueError(f"unknown tokenizer kind '{kind}' (expected 'byte' or 'bpe')")


def load_tokenizer(path: str | Path):
    spec = json.loads(Path(path).read_text())
    if spec.get("kind") == "byte":
        return ByteTokenizer()
    from tokenizers import Tokenizer

    return BPETokenizer(Tokenizer.from_file(str(path)))


def encode_documents(tokenizer, texts: list[str]) -> np.ndarray:
    """Join documents as BOS doc EOS BOS doc EOS …, the layout the paper trains on."""
    ids: list[int] = []
    for text in texts:
        ids += [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id]
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.int32
    return np.asarray(ids, dtype=dtype)


def split_heldout(tokens: np.ndarray, fitness_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Held-out text → (search-fitness region, final-evaluation region), disjoint by construction."""
    cut = int(len(tokens) * fitness_fraction)
    return tokens[:cut], tokens[cut:]


def load_tokens(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


# ---------------------------------------------------------------------------------------------
# Windows


def sample_windows(tokens: np.ndarray, length: int, n: int, seed: int | list[int]) -> np.ndarray:
    """`n` non-overlapping windows of `length` tokens, slots chosen by `seed` (same seed → same windows)."""
    slots = len(tokens) // length
    if n > slots:
        raise ValueError(f"region of {len(tokens)} tokens holds only {slots} windows of {length}, {n} asked for")
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(slots, size=n, replace=False)) * length
    return np.stack([tokens[s : s + length] for s in starts]).astype(np.int64)


def samples_for_length(length: int, max_samples: int, tokens_per_length: int) -> int:
    """Fewer windows at long lengths so every length costs about the same number of tokens."""
    return max(1, min(max_samples, tokens_per_length // length))


# ---------------------------------------------------------------------------------------------
# Passkey retrieval (Landmark / LongRoPE template)

PASSKEY_TASK = (
    "There is an important info hidden inside a lot of irrelevant text. "
    "Find it and memorize them. I will quiz you about the important information there."
)
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
PASSKEY_QUESTION = "What is the pass key? The pass key is"


def fill_to_length(build, length: int, what: str) -> list[int]:
    """The longest `build(filler)` of at most `length` tokens, by bisection on the filler's character count."""
    filler = lambda n: (PASSKEY_FILLER * (n // len(PASSKEY_FILLER) + 1))[:n]  # noqa: E731
    if len(build("")) > length:
        raise ValueError(f"{what} needs more than {length} tokens even without filler")
    lo, hi = 0, 8 * length  # ≥ 1 char per token for every tokenizer we ship
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if len(build(filler(mid))) <= length else (lo, mid - 1)
    return build(filler(lo))


@dataclass(frozen=True)
class PasskeyPrompt:
    prompt: list[int]
    answer: list[int]
    key: int


def passkey_prompt(tokenizer, length: int, depth: float, key: int, with_task: bool = True) -> PasskeyPrompt:
    """A prompt with the needle at `depth` (0 = start, 1 = end) of the filler, such that prompt and answer
    together take at most `length` tokens (so the answer is decoded within the length under test).

    The filler is sized by bisection on its character count so the tokenized prompt fills `length`;
    the task line is dropped when `with_task` is False (short training contexts have no room for it).
    """
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    head = PASSKEY_TASK + "\n" if with_task else ""
    answer = tokenizer.encode(f" {key}.")
    length -= len(answer)

    def build(filler: str) -> list[int]:
        cut = int(len(filler) * depth)
        return tokenizer.encode(f"{head}{filler[:cut]}\n{needle}\n{filler[cut:]}\n{PASSKEY_QUESTION}")

    return PasskeyPrompt(fill_to_length(build, length, "passkey prompt"), answer, key)


def passkey_training_example(tokenizer, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` tokens: a passkey prompt followed by its answer, for mixing into pretraining."""
    key = int(rng.integers(1, 50000))
    p = passkey_prompt(tokenizer, length, float(rng.random()), key, with_task=False)
    ids = p.prompt + p.answer
    ids += [tokenizer.eos_id] * (length - len(ids))
    return np.asarray(ids, dtype=np.int64)

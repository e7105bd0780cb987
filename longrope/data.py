"""Corpora, tokenizers, token-id splits, evaluation windows and synthetic passkey prompts."""
from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path
from string import ascii_lowercase

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
# Tokenizers. Every kind is a Hugging Face `tokenizers` tokenizer kept as a tokenizer folder (tokenizer.json +
# tokenizer_config.json) that `AutoTokenizer.from_pretrained` opens with no custom code: bytes by default (ids
# 0-255 are the UTF-8 bytes), a byte-level BPE trained here, or a pretrained model's own tokenizer.


class Tokenizer:
    """A `tokenizers` tokenizer and its model's document markers, read from its own special tokens (never from
    hard-coded names). Documents are laid out as BOS doc EOS when the tokenizer itself starts a sequence with BOS,
    else as doc EOS (SmolLM2, Qwen2); BOS alone separates them when there is no EOS."""

    def __init__(self, tokenizer, config: dict, source: str = "tokenizer"):
        self._tok, self.config = tokenizer, config
        self.vocab_size = tokenizer.get_vocab_size()
        bos, eos = (self._token_id(config.get(key)) for key in ("bos_token", "eos_token"))
        if bos is None and eos is None:
            raise ValueError(f"{source} has neither a BOS nor an EOS token to separate documents")
        starts_with_bos = bos is not None and tokenizer.encode("a", add_special_tokens=True).ids[:1] == [bos]
        self.bos_id = bos if starts_with_bos or eos is None else None
        self.eos_id = eos

    def _token_id(self, token) -> int | None:
        content = token.get("content") if isinstance(token, dict) else token
        return None if content is None else self._tok.token_to_id(content)

    @classmethod
    def load(cls, folder: str | Path) -> "Tokenizer":
        """A tokenizer folder: this project's, or a Hugging Face model's, whose config.json names the special token
        ids where its tokenizer_config.json does not."""
        from tokenizers import Tokenizer as HFTokenizer

        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{folder} has no tokenizer.json")
        tokenizer = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        config, model_config = (_read_json(folder / name) for name in ("tokenizer_config.json", "config.json"))
        for key in ("bos", "eos"):
            if config.get(f"{key}_token") is None and isinstance(model_config.get(f"{key}_token_id"), int):
                config[f"{key}_token"] = tokenizer.id_to_token(model_config[f"{key}_token_id"])
        return cls(tokenizer, config, source=f"the tokenizer in {folder}")

    def encode(self, text: str) -> list[int]:
        # The post-processor's BOS is left out: encode_documents places the document markers itself.
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))

    def save(self, folder: str | Path) -> None:
        """A tokenizer folder; saving into a model folder makes that folder a complete Hugging Face checkpoint."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps(self.config, indent=2) + "\n")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _with_document_markers(tokenizer) -> Tokenizer:
    """A tokenizer built here: <s> starts every sequence and documents end with </s>. As in every Hugging Face
    tokenizer, the literal text "<s>" or "</s>" encodes as that special token (the bundled books have none)."""
    from tokenizers import processors

    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))])
    return Tokenizer(tokenizer, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"})


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's printable stand-in character for every byte, the alphabet of byte-level pre-tokenization."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in printable else next(extra)) for b in range(256)}


def byte_tokenizer() -> Tokenizer:
    """UTF-8 bytes as ids 0-255, <s> = 256, </s> = 257: byte-level pre-tokenization and a BPE with no merges."""
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

    tokenizer = HFTokenizer(models.BPE(vocab={ch: b for b, ch in _byte_alphabet().items()}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<s>", "</s>"])
    return _with_document_markers(tokenizer)


def bpe_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=["<s>", "</s>"], show_progress=False)
    return _with_document_markers(trainer._tokenizer)


def train_tokenizer(kind: str, texts: list[str], vocab_size: int | None = None) -> Tokenizer:
    if kind == "byte":
        return byte_tokenizer()
    if kind == "bpe":
        if not vocab_size:
            raise ValueError("tokenizer kind 'bpe' needs vocab_size")
        return bpe_tokenizer(texts, vocab_size)
    raise ValueError(f"unknown tokenizer kind '{kind}' (expected 'byte' or 'bpe')")


load_tokenizer = Tokenizer.load


def encode_documents(tokenizer, texts: list[str]) -> np.ndarray:
    """Join documents as BOS doc EOS BOS doc EOS … (the layout the paper trains on), or without the marker the
    tokenizer does not have."""
    head = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    tail = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    ids: list[int] = []
    for text in texts:
        ids += [*head, *tokenizer.encode(text), *tail]
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


def window_starts(region: int, length: int, n: int, seed: int | list[int]) -> np.ndarray:
    """Sorted first-token offsets of `n` non-overlapping windows of `length` in a region of `region` tokens,
    slots chosen by `seed`: the same (region, length, n, seed) always gives the same windows, so every model
    and scaling evaluated at a length is scored on identical text and comparisons can pair."""
    slots = region // length
    if n > slots:
        raise ValueError(f"region of {region} tokens holds only {slots} windows of {length}, {n} asked for")
    return np.sort(np.random.default_rng(seed).choice(slots, size=n, replace=False)) * length


def sample_windows(tokens: np.ndarray, length: int, n: int, seed: int | list[int]) -> np.ndarray:
    """The windows of `window_starts` as an (n, length) int64 array."""
    return np.stack([tokens[s : s + length] for s in window_starts(len(tokens), length, n, seed)]).astype(np.int64)


def samples_for_length(length: int, max_samples: int, tokens_per_length: int, min_samples: int, region: int) -> int:
    """Windows to score at one length: enough for `tokens_per_length` scored tokens (a window scores length - 1),
    so short lengths get many cheap windows; at least `min_samples` (an interval needs several windows), at most
    `max_samples`, and never more than the `region` of tokens holds."""
    wanted = min(max_samples, max(min_samples, math.ceil(tokens_per_length / max(1, length - 1))))
    return max(1, min(wanted, region // length))


# ---------------------------------------------------------------------------------------------
# Needle-driven fitness (LongRoPE2): perplexity only over tokens that need distant context

NEEDLE_STATEMENT = "\nThe secret number of {name} is {value}.\n"


@dataclass(frozen=True)
class NeedleWindows:
    ids: np.ndarray     # (n, length) int64
    scored: np.ndarray  # (n, length) bool: the tokens whose NLL counts, the recalled digits


def needle_windows(tokens: np.ndarray, tokenizer, length: int, n: int, seed: int | list[int],
                   original_length: int, needles: int = 4) -> NeedleWindows:
    """`n` windows of exactly `length` tokens of `tokens` (the fitness half only) with key–value statements planted
    far before a recall block that repeats them; only the recalled digits are scored.

    Window i starts where sample_windows' window i does (window_starts, same seed). A generator seeded with the
    seed's first child (np.random.SeedSequence(seed).spawn(1)[0], apart from the slots' draws) then draws, window by
    window: `needles` names (a capital from A–Z without replacement, so they differ, then 5 lowercase letters),
    their values (integers in [10000, 100000)), the insertion depths, and the recall order (a permutation).
    Statement m is the tokens of NEEDLE_STATEMENT for name m and value m, encoded alone; R = their total length.
    The haystack is the window's first length − 2R tokens h; statement m is inserted before haystack token d_m,
    the depths d_m sorted draws from [0, limit], limit = |h| − original_length so that at least original_length
    haystack tokens separate every statement from the recall block (limit = |h| // 2, the first half, when
    |h| < original_length). The recall block, the last R tokens, is the statements again in the drawn order.
    `scored` marks the recall block's tokens whose text contains a digit: token t is predicted from ids[:t], so its
    NLL is next_token_nll's entry t − 1 (evaluate.window_nll). Raises when 2R > length.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    ids, scored = np.zeros((n, length), dtype=np.int64), np.zeros((n, length), dtype=bool)
    for i, start in enumerate(window_starts(len(tokens), length, n, seed)):
        names = [ascii_lowercase[first].upper() + "".join(ascii_lowercase[c] for c in rng.integers(0, 26, 5))
                 for first in rng.choice(26, needles, replace=False)]
        statements = [tokenizer.encode(NEEDLE_STATEMENT.format(name=name, value=value))
                      for name, value in zip(names, rng.integers(10000, 100000, needles))]
        hay = length - 2 * sum(map(len, statements))
        if hay < 0:
            raise ValueError(f"{needles} needle statements and their recall need {length - hay} tokens, "
                             f"more than the window's {length}")
        limit = hay - original_length if hay >= original_length else hay // 2
        depths = np.sort(rng.integers(0, limit + 1, needles))
        recall = [statements[m] for m in rng.permutation(needles)]
        haystack = tokens[start : start + hay]
        pieces, cut = [], 0
        for depth, statement in zip(depths, statements):
            pieces += [haystack[cut:depth], statement]
            cut = depth
        ids[i] = np.concatenate([*pieces, haystack[cut:], *recall])
        digits = [any(ch.isdigit() for ch in tokenizer.decode([t])) for statement in recall for t in statement]
        scored[i, length - len(digits):] = digits
    return NeedleWindows(ids, scored)


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

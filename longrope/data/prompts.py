"""Synthetic passkey prompts (Landmark / LongRoPE template), for retrieval and for pretraining."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

"""Retrieval tests of long context: passkey (Landmark / LongRoPE protocol) and RULER-style needle tasks.

Every prompt is built from a seed, decoded greedily, and scored by a pure function: passkey is correct when the
first integer of the output equals the key; the needle tasks score RULER's string_match_all, the fraction of
expected strings that appear in the output.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np
import torch

from longrope.data.prompts import fill_to_length, passkey_prompt
from longrope.evaluation.perplexity import progress_bar
from longrope.evaluation.stats import wilson_interval

# ---------------------------------------------------------------------------------------------
# Scoring


def first_integer(text: str) -> int | None:
    match = re.search(r"\d+", text)
    return int(match.group()) if match else None


def passkey_correct(output: str, key: int) -> bool:
    return first_integer(output) == key


def string_match_all(output: str, expected: list[str]) -> float:
    """RULER's metric: the share of expected strings found in the output (case-insensitive)."""
    return sum(e.lower() in output.lower() for e in expected) / len(expected)


# ---------------------------------------------------------------------------------------------
# Greedy decoding without ever holding a prompt-length × vocabulary logits matrix


@torch.no_grad()
def greedy(model, prompt: list[int], max_new_tokens: int) -> list[int]:
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    out = model.model(input_ids=ids, use_cache=True)
    generated = []
    for step in range(max_new_tokens):
        token = model.lm_head(out.last_hidden_state[:, -1]).argmax(-1)
        generated.append(int(token))
        if step + 1 == max_new_tokens:
            break
        position = torch.tensor([[len(prompt) + step]], device=device)
        out = model.model(input_ids=token[:, None], position_ids=position, cache=out.cache,
                          use_cache=True)
    return generated


# ---------------------------------------------------------------------------------------------
# Passkey


def passkey_trials(tokenizer, length: int, depths: list[float], trials: int, seed: int, with_task: bool = True):
    """(depth, key, prompt) for every trial of one length: keys drawn from [seed, length, depth index, trial]."""
    for i, depth in enumerate(depths):
        for trial in range(trials):
            key = int(np.random.default_rng([seed, length, i, trial]).integers(10000, 100000))
            yield depth, key, passkey_prompt(tokenizer, length, depth, key, with_task=with_task)


def passkey_accuracy(model, tokenizer, length: int, depths: list[float], trials: int, seed: int,
                     with_task: bool = True, max_new_tokens: int = 8, progress: str | None = None) -> list[dict]:
    """One row per depth: accuracy over `trials` seeded keys with the needle at that depth, with its Wilson
    95 % interval. `progress` labels a progress bar over the trials."""
    hits: dict[float, int] = {d: 0 for d in depths}
    for depth, key, prompt in progress_bar(passkey_trials(tokenizer, length, depths, trials, seed, with_task),
                                           progress, unit="trial", total=len(depths) * trials):
        hits[depth] += passkey_correct(tokenizer.decode(greedy(model, prompt.prompt, max_new_tokens)), key)
    return [{"length": length, "depth": d, "trials": trials, "accuracy": hits[d] / trials,
             **dict(zip(("accuracy_lo", "accuracy_hi"), wilson_interval(hits[d], trials)))} for d in depths]


# ---------------------------------------------------------------------------------------------
# RULER-style needle tasks (offline: noise haystack, synthetic keys and values)

NEEDLE_TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "variable_tracking")


@dataclass(frozen=True)
class NeedleExample:
    prompt: list[int]
    expected: list[str]
    max_new_tokens: int


def needle_example(task: str, tokenizer, length: int, rng: np.random.Generator) -> NeedleExample:
    """A prompt of at most `length` tokens: statements (needles) at random depths in a noise haystack, a query."""
    word = lambda: "".join(rng.choice(list(string.ascii_lowercase), 6))  # noqa: E731
    number = lambda: str(int(rng.integers(100000, 1000000)))  # noqa: E731
    keys = [word() for _ in range(4)]
    values = [number() for _ in range(4)]
    fact = "One of the special magic numbers for {} is: {}."
    if task == "niah_single":
        needles, asked, expected = [fact.format(keys[0], values[0])], [keys[0]], [values[0]]
    elif task == "niah_multikey":  # distractor needles under other keys
        needles, asked, expected = [fact.format(k, v) for k, v in zip(keys, values)], [keys[0]], [values[0]]
    elif task == "niah_multivalue":  # one key, every value of it wanted
        needles, asked, expected = [fact.format(keys[0], v) for v in values], [keys[0]], values
    elif task == "niah_multiquery":
        needles, asked, expected = [fact.format(k, v) for k, v in zip(keys, values)], keys[:2], values[:2]
    elif task == "variable_tracking":  # a chain of assignments; every variable holding the value is wanted
        names = [word().upper()[:5] for _ in range(4)]
        needles = [f"VAR {names[0]} = {values[0]}."] + [f"VAR {b} = {a}." for a, b in zip(names, names[1:])]
        question = f"Find all variables that are assigned the value {values[0]}. Answer: they are"
        return _fill(tokenizer, length, needles, question, names, rng)
    else:
        raise ValueError(f"unknown needle task {task!r} (expected one of {', '.join(NEEDLE_TASKS)})")
    question = f"What are the special magic numbers for {' and '.join(asked)}? The special magic numbers are:"
    return _fill(tokenizer, length, needles, question, expected, rng)


def _fill(tokenizer, length: int, needles: list[str], question: str, expected: list[str], rng) -> NeedleExample:
    """Insert the needles in order at sorted random depths of a haystack sized (by bisection) to fill `length`."""
    depths = np.sort(rng.random(len(needles)))

    def build(hay: str) -> list[int]:
        parts, start = [], 0
        for cut, needle in zip([int(d * len(hay)) for d in depths], needles):
            parts += [hay[start:cut], f"\n{needle}\n"]
            start = cut
        return tokenizer.encode("".join(parts) + hay[start:] + "\n" + question)

    prompt = fill_to_length(build, length, "needle prompt")
    answer_tokens = len(tokenizer.encode(" " + ", ".join(expected) + "."))
    return NeedleExample(prompt, expected, answer_tokens + 4)


def needle_score(model, tokenizer, task: str, length: int, trials: int, seed: int,
                 progress: str | None = None) -> dict:
    """RULER's score of `task` at `length` over `trials` seeded prompts; `progress` labels a progress bar over them."""
    rng = np.random.default_rng([seed, length, NEEDLE_TASKS.index(task)])
    scores = []
    for _ in progress_bar(range(trials), progress, unit="trial"):
        example = needle_example(task, tokenizer, length, rng)
        output = tokenizer.decode(greedy(model, example.prompt, example.max_new_tokens))
        scores.append(string_match_all(output, example.expected))
    lo, hi = wilson_interval(sum(scores), trials)  # conservative for scores in [0, 1]
    return {"task": task, "length": length, "trials": trials, "score": float(np.mean(scores)), "score_lo": lo,
            "score_hi": hi}

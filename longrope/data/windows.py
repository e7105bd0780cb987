"""Windows of a token region drawn by seed, and needle-driven fitness windows (LongRoPE2)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from string import ascii_lowercase

import numpy as np

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


@dataclass(frozen=True)
class NestedWindows:
    """The paper's truncation protocol (the same documents truncated to every evaluation length), on one text:
    span i begins at `starts[i]`, and the window at a length L is the first L tokens of spans 0 … counts[L] - 1.
    Shorter lengths score more windows (counts fall with L), so each span is as long as the longest length it
    serves, and one forward over it yields every shorter window as a prefix (perplexity.truncated_perplexities)."""
    starts: np.ndarray       # (n,) first-token offsets, n = the count at the shortest length
    counts: dict[int, int]   # windows per length

    def starts_at(self, length: int) -> np.ndarray:
        return self.starts[: self.counts[length]]

    def extent(self, span: int) -> int:
        """The longest length that span `span` serves."""
        return _extent(self.counts, span)


def _extent(counts: dict[int, int], span: int) -> int:
    return max(length for length, count in counts.items() if span < count)


def nested_windows(region: int, counts: dict[int, int], seed: int | list[int]) -> NestedWindows:
    """Spans for `counts` (windows per length, non-increasing as the length grows), laid without overlap in a
    region of `region` tokens: a seeded order along the text, the spare tokens split at seeded cut points. The
    same (region, counts, seed) always gives the same windows, so every model and scaling evaluated at a length is
    scored on identical text and comparisons can pair."""
    lengths = sorted(counts)
    if any(counts[a] < counts[b] for a, b in zip(lengths, lengths[1:])):
        raise ValueError(f"window counts must not grow with the length, got {counts}")
    extents = np.array([_extent(counts, i) for i in range(counts[lengths[0]])], dtype=np.int64)
    spare = region - int(extents.sum())
    if spare < 0:
        raise ValueError(f"the evaluation text holds {region} tokens; windows of {counts} (length: count) need "
                         f"{int(extents.sum())} — lower evaluation.tokens_per_length, min_samples or the lengths")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(extents))  # order[k]: the span placed k-th along the text
    gaps = np.sort(rng.integers(0, spare + 1, size=len(extents)))  # spare tokens before the k-th span
    starts = np.empty_like(extents)
    starts[order] = np.concatenate([[0], np.cumsum(extents[order])[:-1]]) + gaps
    return NestedWindows(starts, dict(counts))


def pick_documents(lengths: np.ndarray, min_length: int, count: int, pick: str, seed: int | list[int]) -> np.ndarray:
    """Sorted ids of `count` documents of at least `min_length` tokens (`lengths[i]` is document i's): the first in
    store order (`pick` 'first', the official code's choice) or drawn by `seed` without replacement ('seeded').
    Raises when fewer documents are that long."""
    long_enough = np.flatnonzero(np.asarray(lengths) >= min_length)
    if count > len(long_enough):
        raise ValueError(f"{len(long_enough)} documents of at least {min_length} tokens exist, {count} asked for")
    if pick == "first":
        return long_enough[:count]
    return np.sort(np.random.default_rng(seed).choice(long_enough, size=count, replace=False))


def evaluation_documents(store, span: int, seed: int, count: int, min_length: int | None = None,
                         pick: str = "first") -> np.ndarray:
    """The documents of a TokenStore that evaluation.documents scores at a span of `span` tokens: `count` of at
    least max(min_length, span) tokens (min_length None: span), picked by pick_documents with the seed
    [seed, that minimum], so that every span min_length covers is scored on the same documents."""
    least = max(min_length or span, span)
    return pick_documents(np.diff(store.documents), least, count, pick, seed=[seed, least])


def document_windows(store, ids: np.ndarray, length: int) -> np.ndarray:
    """The first `length` tokens of each document `ids` of a TokenStore, as an (n, length) int64 array."""
    return np.stack([store[i][:length] for i in ids]).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Needle-driven fitness (LongRoPE2): perplexity only over tokens that need distant context

NEEDLE_STATEMENT = "\nThe secret number of {name} is {value}.\n"


@dataclass(frozen=True)
class NeedleWindows:
    ids: np.ndarray     # (n, length) int64
    scored: np.ndarray  # (n, length) bool: the tokens whose NLL counts, the recalled digits


def needle_windows(tokens: np.ndarray, tokenizer, length: int, n: int, seed: int | list[int],
                   original_length: int, needles: int = 4, starts: np.ndarray | None = None) -> NeedleWindows:
    """`n` windows of exactly `length` tokens of `tokens` (the fitness half only) with key–value statements planted
    far before a recall block that repeats them; only the recalled digits are scored.

    Window i starts where sample_windows' window i does (window_starts, same seed), or at `starts[i]` when given
    (the first tokens of whole documents, each at least `length` long). A generator seeded with the
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
    for i, start in enumerate(window_starts(len(tokens), length, n, seed) if starts is None else starts):
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



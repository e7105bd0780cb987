"""Evolutionary search for LongRoPE's rescale factors λ and start-token count n̂ (Ding et al., 2024, Algorithm 1).

A pure engine: the caller passes a batched fitness that returns each candidate's mean NLL on each fitness window
(WindowScores); the fitness is their perplexity, lower is better. The operators follow the official code
(evolution/algorithms/dim_mono.py): mutation resamples single genes between their neighbours, so λ stays
non-decreasing by construction; crossover edits a copy of the better parent gene by gene. No candidate is scored twice
on a window. Every scored batch is appended to a JSONL log with its window scores as it comes, and each generation's
record with the RNG state after them, so a killed search resumes — redoing at most the batch it was scoring — and
ends exactly where an uninterrupted one would.

Multi-fidelity (successive halving, optional): a generation's new candidates are first scored on the first
fidelity[0] fitness windows, the best `promote` fraction of them on windows fidelity[0] … fidelity[1] - 1, and so on;
the last survivors on the remaining windows. A promoted candidate keeps its scores on the windows it has seen, so its
fitness is exactly the one a single call on all windows gives. Fully scored candidates rank before partially scored
ones, so the parents and the reported best come from full-fidelity scores.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from longrope.evaluation.stats import exp_nll

MAX_TRIES = 10_000  # proposals per child before the unseen part of the space counts as exhausted
# Per generation: best and median over the fully scored candidates of the population; evaluations = distinct candidates
# scored at any fidelity, full_evaluations = those scored on all windows, window_evaluations = (candidate, window)
# scores spent in all, at every fitness length; seconds = wall time of the logged generations, summed over resumes (the
# one field that differs between reruns).
RECORD_KEYS = ("generation", "best", "median", "evaluations", "full_evaluations", "window_evaluations", "cache_hits",
               "non_finite", "seconds")
# The log's header carries it: logs without it (window_evaluations counted the cheaper rungs only, no window scores to
# resume from) are refused rather than misread.
LOG_FORMAT = 3


@dataclass(frozen=True)
class SearchConfig:
    ceiling: float  # max λ: 1.25·s in the paper, 1 + s in the official code
    floor: float = 1.0
    step: float = 0.01  # λ grid
    population: int = 64  # P
    mutations: int = 16  # N1 per generation
    crossovers: int = 16  # N2 per generation
    parents: int = 32  # top-k
    generations: int = 40  # T
    mutation_prob: float = 0.3  # p, per gene
    max_crossover_tries: int = 20
    n_hat_candidates: tuple[int, ...] = (0,)  # paper: (0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 64, 128, 256)
    early_stop_window: int | None = None  # stop when the best stalls (relative 1e-4) this many generations
    seed: int = 42
    fidelity: tuple[int, ...] = ()  # window counts of the cheaper rungs; () = every new candidate on all windows
    promote: float = 1 / 3  # share of a rung's candidates (rounded up, at least 1) scored on the next rung

    def __post_init__(self):
        n_hats, fidelity = tuple(self.n_hat_candidates), tuple(self.fidelity)
        object.__setattr__(self, "n_hat_candidates", n_hats)  # a list would make the config unhashable
        object.__setattr__(self, "fidelity", fidelity)
        grid = self.step > 0 and _k_range(self)[0] <= _k_range(self)[1]
        n_hat_ok = len(n_hats) == len(set(n_hats)) > 0 and all(isinstance(n, int) for n in n_hats)
        fidelity_ok = all(isinstance(n, int) for n in fidelity) and all(a < b for a, b in zip((0, *fidelity), fidelity))
        checks = {
            "floor": (self.floor > 0, "must be > 0"),
            "ceiling": (self.ceiling >= self.floor, "must be >= floor"),
            "step": (grid, "must be > 0 with a grid point in [floor, ceiling]"),
            "population": (self.population >= 1, "must be >= 1"),
            "mutations": (self.mutations >= 0, "must be >= 0"),
            "crossovers": (self.crossovers >= 0, "must be >= 0"),
            "parents": (1 + (self.crossovers > 0) <= self.parents <= self.population,
                        "must be in [1, population], and >= 2 for crossovers"),
            "generations": (self.generations >= 0, "must be >= 0"),
            "mutation_prob": (0 < self.mutation_prob <= 1, "must be in (0, 1]"),
            "max_crossover_tries": (self.max_crossover_tries >= 1, "must be >= 1"),
            "n_hat_candidates": (n_hat_ok and min(n_hats) >= 0, "must be distinct integers >= 0, at least one"),
            "early_stop_window": (self.early_stop_window is None or self.early_stop_window >= 1,
                                  "must be None or >= 1"),
            "fidelity": (fidelity_ok, "must be strictly increasing integers >= 1 (window counts), or empty"),
            "promote": (0 < self.promote <= 1, "must be in (0, 1]"),
        }  # fmt: skip
        for name, (ok, rule) in checks.items():
            if not ok:
                raise ValueError(f"SearchConfig.{name} = {getattr(self, name)!r} {rule}")


@dataclass(frozen=True)
class Candidate:
    factors: tuple[float, ...]  # λ on the grid, non-decreasing, floor <= λ <= ceiling
    n_hat: int = 0


@dataclass(frozen=True)
class WindowScores:
    """A candidate's mean NLL on each fitness window it was scored on: per fitness length, one value per window, in
    window order. The fitness is a function of these alone, so scores on later windows extend the ones on earlier
    windows (+) instead of rescoring them."""

    nll: tuple[tuple[float, ...], ...]

    def __post_init__(self):  # lists and arrays (from JSON, from a model) become hashable, exactly comparable floats
        object.__setattr__(self, "nll", tuple(tuple(float(x) for x in per_length) for per_length in self.nll))
        if not self.nll:
            raise ValueError("WindowScores needs at least one fitness length")

    def __add__(self, later: WindowScores) -> WindowScores:
        if len(later.nll) != len(self.nll):
            raise ValueError(f"scores at {len(later.nll)} fitness lengths cannot extend scores at {len(self.nll)}")
        return WindowScores(tuple(a + b for a, b in zip(self.nll, later.nll)))

    @property
    def count(self) -> int:
        """Window scores held, over every fitness length."""
        return sum(map(len, self.nll))

    @property
    def fitness(self) -> float:
        """The perplexity at each length (exp of its windows' mean NLL, as evaluation.perplexity), geometric mean over
        the lengths (a recovery search scores two)."""
        return math.exp(np.mean(np.log([exp_nll(float(np.mean(n))) for n in self.nll])))


# fitness(candidates, windows): per candidate, its WindowScores on windows[windows] of each fitness length — a slice
# of window indices, slice(k, None) being every window from k on
FitnessFn = Callable[[list[Candidate], slice], list[WindowScores]]


@dataclass(frozen=True)
class _Scored:
    scores: WindowScores  # on every window scored so far
    rung: int  # the highest rung reached; len(cfg.fidelity) = all windows
    value: float  # scores.fitness, with a non-finite one as inf so it ranks last


@dataclass
class SearchResult:
    best: Candidate  # the best fully scored candidate
    best_fitness: float
    history: list[dict]  # one record per generation, keys RECORD_KEYS
    evaluations: int
    cache_hits: int
    window_evaluations: int  # (candidate, window) scores spent, at every fitness length


def _k_range(cfg: SearchConfig) -> tuple[int, int]:  # grid indices of the lowest and highest allowed λ
    return math.ceil(cfg.floor / cfg.step - 1e-9), math.floor(cfg.ceiling / cfg.step + 1e-9)


def _lam(k: int, cfg: SearchConfig) -> float:
    return round(k * cfg.step, 10)  # one canonical float per grid point, so equality is exact


def snap(factors: Sequence[float], cfg: SearchConfig) -> tuple[float, ...]:
    """Nearest grid point per λ, clipped to [floor, ceiling], then made non-decreasing by a running maximum."""
    x = np.asarray(factors, dtype=np.float64)
    if x.ndim != 1 or not len(x) or not np.isfinite(x).all():
        raise ValueError(f"factors must be a non-empty finite vector, got {factors!r}")
    ks = np.maximum.accumulate(np.clip(np.rint(x / cfg.step), *_k_range(cfg)))
    return tuple(_lam(int(k), cfg) for k in ks)


class _Operators:
    """Mutation and crossover on grid indices; a child already evaluated or queued this generation is redrawn."""

    def __init__(self, cfg: SearchConfig, rng: np.random.Generator, cache: dict[Candidate, _Scored]):
        self.cfg, self.rng, self.cache = cfg, rng, cache
        self.lo, self.hi = _k_range(cfg)
        self.queued: set[Candidate] = set()
        self.cache_hits = 0  # proposals redrawn because they exactly matched an evaluated or queued candidate

    def ks(self, c: Candidate) -> list[int]:
        return [round(x / self.cfg.step) for x in c.factors]

    def accept(self, ks: list[int], n_hat: int) -> Candidate | None:
        if any(a > b for a, b in zip(ks, ks[1:])):
            return None
        c = Candidate(tuple(_lam(k, self.cfg) for k in ks), int(n_hat))
        if c in self.cache or c in self.queued:
            self.cache_hits += 1
            return None
        self.queued.add(c)
        return c

    def mutate(self, parent: Candidate) -> Candidate:
        p = self.cfg.mutation_prob
        for _ in range(MAX_TRIES):
            ks, n_hat = self.ks(parent), parent.n_hat
            for i in range(len(ks)):
                if self.rng.random() < p:
                    # bounded by the (possibly just mutated) neighbours, so the order holds by construction
                    lo = ks[i - 1] if i > 0 else self.lo
                    hi = ks[i + 1] if i + 1 < len(ks) else self.hi
                    ks[i] = int(self.rng.integers(lo, hi + 1))
            if self.rng.random() < p:
                n_hat = self.rng.choice(self.cfg.n_hat_candidates)
            if (child := self.accept(ks, n_hat)) is not None:
                return child
        raise RuntimeError(f"search space exhausted: no unseen mutant of {parent} after {MAX_TRIES} tries; "
                           "widen [floor, ceiling] or shrink the population")  # fmt: skip

    def crossover(self, better: Candidate, other: Candidate) -> Candidate | None:
        """The better parent taking some of the other's genes (n̂ last); None if no unseen monotone mix turned up."""
        ks, theirs = self.ks(better) + [better.n_hat], self.ks(other) + [other.n_hat]
        for _ in range(self.cfg.max_crossover_tries):
            for i in range(len(ks)):
                if self.rng.random() < self.cfg.mutation_prob and self.rng.random() < 0.5 and ks[i] != theirs[i]:
                    ks[i] = theirs[i]  # failed edits accumulate, as in the official code
                    if (child := self.accept(ks[:-1], ks[-1])) is not None:
                        return child
        return None


def _candidate(e: dict) -> Candidate:
    return Candidate(tuple(e["factors"]), e["n_hat"])


def _write(path: Path, lines: list[dict], mode: str = "a") -> None:
    with open(path, mode) as f:
        f.write("".join(json.dumps(line) + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())  # a line on disk survives a kill of the whole machine


def generation_records(path: str | Path) -> list[dict]:
    """The generation records of a search log, without its header and the window scores logged between them."""
    return [r for r in map(json.loads, Path(path).read_text().splitlines()[1:]) if "rung" not in r]


def _read_log(path: Path) -> list[dict]:
    """Complete lines of the log; a last line cut short by a kill is dropped, from the file too."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for n, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines) - 1:
                raise ValueError(f"{path}: line {n + 1} is corrupt; delete the log to start the search over")
    if len(records) < len(lines) or not text.endswith("\n"):
        _write(path, records, mode="w")
    return records


def _stalled(history: list[dict], window: int | None) -> bool:
    """True when the best has not improved by a relative 1e-4 in the last `window` generations."""
    if window is None:
        return False
    best, since = math.inf, 0
    for rec in history:
        improved = rec["best"] < best - 1e-4 * abs(best) if math.isfinite(best) else rec["best"] < best
        best, since = (rec["best"], 0) if improved else (best, since + 1)
    return since >= window


def search(
    fitness: FitnessFn,
    seeds: list[Sequence[float]],
    cfg: SearchConfig,
    log_path: str | Path,
    progress: Callable[[dict], None] | None = None,
) -> SearchResult:
    """Evolve λ (and n̂) from the seed factors; resume from log_path if it holds generations of the same search.

    fitness gets each generation's new candidates once per rung, on that rung's windows only: all of them with
    windows=slice(0, cfg.fidelity[0]), the best cfg.promote of those with slice(cfg.fidelity[0], cfg.fidelity[1]),
    ..., the last survivors with slice(cfg.fidelity[-1], None) (with no cheaper rungs: every new candidate, in one
    batch with slice(0, None)). NaN/inf fitness ranks last within its rung (counted in the record's "non_finite").
    progress(record) follows every generation, replayed ones from the log included.
    """
    start = [Candidate(snap(s, cfg)) for s in seeds]
    if not start or len({len(c.factors) for c in start}) != 1 or len(start) > cfg.population:
        raise ValueError(f"need 1 to {cfg.population} seeds of equal length, got lengths {[len(s) for s in seeds]}")
    log_path = Path(log_path)
    header = json.loads(json.dumps({"format": LOG_FORMAT, "config": asdict(cfg),
                                    "seeds": [list(c.factors) for c in start]}))  # as read back
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    rungs = [slice(a, b) for a, b in zip((0, *cfg.fidelity), (*cfg.fidelity, None))]  # the windows each rung adds
    full = len(cfg.fidelity)
    cache: dict[Candidate, _Scored] = {}  # every scored candidate
    ops = _Operators(cfg, rng, cache)
    history: list[dict] = []
    population: list[Candidate] = []  # sorted best first once evaluated

    def add(c: Candidate, scores: WindowScores, rung: int) -> None:
        scores = cache[c].scores + scores if rung else scores
        value = scores.fitness
        cache[c] = _Scored(scores, rung, value if math.isfinite(value) else math.inf)

    log = _read_log(log_path)
    if log and log[0] != header:  # checked first, so a log of another format never reaches the fields read below
        raise ValueError(f"{log_path} was written by a search with another config or seeds, or by an older version; "
                         "delete it to start over")
    if not log:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        _write(log_path, [header], mode="w")
    replay: list[dict] = []  # the scored batches of a generation whose record is not (yet) in the log
    for line in log[1:]:
        if "rung" in line:
            replay.append(line)
            continue
        for logged in replay:
            for e in logged["scored"]:
                add(_candidate(e), WindowScores(e["nll"]), logged["rung"])
        replay = []
        history.append({k: line[k] for k in RECORD_KEYS})
        population = [_candidate(e) for e in line["population"]]
        rng.bit_generator.state = line["rng_state"]
        ops.cache_hits = line["cache_hits"]
        if progress:
            progress(history[-1])
    # What is left in `replay` is the generation a kill interrupted: it is redone from the same RNG state, so it
    # proposes the same candidates and promotes the same ones, and its logged batches are read instead of rescored.
    seconds, t0 = (history[-1]["seconds"] if history else 0.0), time.perf_counter()

    def rank(c: Candidate) -> tuple[int, float]:  # full fidelity first, then higher rungs; by value within a rung
        return -cache[c].rung, cache[c].value

    def entry(c: Candidate) -> dict:
        seen = rungs[cache[c].rung].stop  # windows scored so far; None = all
        return {"factors": list(c.factors), "n_hat": c.n_hat, "fitness": cache[c].value, "windows": seen}

    def score(batch: list[Candidate], rung: int) -> list[WindowScores]:
        """The batch's scores on the rung's windows: read back from the log when replaying, else from the fitness,
        and logged at once, so that a kill from here on loses none of them."""
        if replay:
            line = replay.pop(0)
            if line["rung"] != rung or [_candidate(e) for e in line["scored"]] != batch:
                raise ValueError(f"{log_path}: the scores logged for generation {len(history)} are not this search's; "
                                 "delete it to start over")
            return [WindowScores(e["nll"]) for e in line["scored"]]
        windows = rungs[rung]
        scores = list(fitness(batch, windows))
        if len(scores) != len(batch):
            raise ValueError(f"fitness returned {len(scores)} scores for {len(batch)} candidates")
        width = None if windows.stop is None else windows.stop - windows.start
        if any(not n or (width is not None and len(n) != width) for s in scores for n in s.nll):
            raise ValueError(f"fitness scored {[list(map(len, s.nll)) for s in scores]} windows (per candidate, per "
                             f"length) where windows[{windows.start}:{windows.stop}] were asked for")
        _write(log_path, [{"generation": len(history), "rung": rung, "windows": [windows.start, windows.stop],
                           "scored": [{"factors": list(c.factors), "n_hat": c.n_hat, "nll": s.nll}
                                      for c, s in zip(batch, scores)]}])  # fmt: skip
        return scores

    def evaluate(members: list[Candidate]) -> list[Candidate]:
        new = [c for c in members if c not in cache]
        batch, scored = new, []
        for rung in range(len(rungs) if new else 0):  # no new candidates: a generation without children
            for c, s in zip(batch, score(batch, rung)):
                add(c, s, rung)
            scored += [entry(c) for c in batch]
            # the best ceil(promote·n) go on (the tolerance keeps float error from promoting one more); sorted() is
            # stable, so ties keep their order, which is deterministic
            batch = sorted(batch, key=rank)[: max(1, math.ceil(cfg.promote * len(batch) - 1e-9))]
        ops.queued.clear()
        ranked = sorted(members, key=rank)
        values = [cache[c].value for c in ranked if cache[c].rung == full]  # never empty: ranked[0] is full fidelity
        record = {"generation": len(history), "best": values[0], "median": float(np.median(values)),
                  "evaluations": len(cache), "full_evaluations": sum(s.rung == full for s in cache.values()),
                  "window_evaluations": sum(s.scores.count for s in cache.values()),
                  "cache_hits": ops.cache_hits, "non_finite": sum(math.isinf(cache[c].value) for c in new),
                  "seconds": round(seconds + time.perf_counter() - t0, 3)}  # fmt: skip
        _write(log_path, [{**record, "population": [entry(c) for c in ranked], "evaluated": scored,
                           "rng_state": rng.bit_generator.state}])  # fmt: skip
        history.append(record)
        if progress:
            progress(record)
        return ranked

    if not history:  # generation 0: the seeds, then mutants of random seeds up to P (paper Alg. 1)
        population = [c for c in start if ops.accept(ops.ks(c), 0)]
        while len(population) < cfg.population:
            population.append(ops.mutate(start[rng.integers(len(start))]))
        population = evaluate(population)
    while len(history) <= cfg.generations and not _stalled(history, cfg.early_stop_window):
        parents = population[: cfg.parents]
        children = [ops.mutate(parents[rng.integers(len(parents))]) for _ in range(cfg.mutations)]
        for _ in range(cfg.crossovers):
            i, j = sorted(rng.choice(len(parents), size=2, replace=False))  # i ranks better
            children.append(ops.crossover(parents[i], parents[j]) or ops.mutate(parents[i]))
        population = evaluate(parents + children)
    return SearchResult(population[0], cache[population[0]].value, history, len(cache), ops.cache_hits,
                        history[-1]["window_evaluations"])


CEILING_RULES = {"paper": lambda s: 1.25 * s, "official": lambda s: 1.0 + s}  # max λ for scale s


def config_from_settings(settings: dict, scale: float) -> SearchConfig:
    """SearchConfig from a workflow stage's search settings; `ceiling` is a rule name or a number."""
    ceiling = settings["ceiling"]
    ceiling = CEILING_RULES[ceiling](scale) if isinstance(ceiling, str) else float(ceiling)
    return SearchConfig(
        ceiling=ceiling, population=settings["population"], mutations=settings["mutations"],
        crossovers=settings["crossovers"], parents=settings["parents"], generations=settings["generations"],
        mutation_prob=settings["mutation_prob"], n_hat_candidates=tuple(settings["n_hat"]),
        early_stop_window=settings["early_stop_window"], seed=settings["seed"],
        **{k: settings[k] for k in ("fidelity", "promote") if k in settings},  # optional: older configs lack them
    )

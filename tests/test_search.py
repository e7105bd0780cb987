"""longrope.search: convergence, operator invariants, dedup, determinism, NaN fitness, resume from the JSONL log,
multi-fidelity (successive halving over fitness windows) that never scores a candidate twice on a window."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from longrope.search.engine import (Candidate, SearchConfig, WindowScores, config_from_settings, generation_records,
                                    search, snap)

ROOT = Path(__file__).resolve().parents[1]
N_HATS = (0, 1, 2, 4, 8, 16)
SMALL = dict(ceiling=9.0, population=24, parents=12, mutations=8, crossovers=8, n_hat_candidates=N_HATS)
# PI-, NTK- and YaRN-like
SEEDS = [[8.0] * 16, [8 ** (i / 15) for i in range(16)], [1.0] * 5 + list(np.linspace(1, 8, 6)) + [8.0] * 5]
TARGET = snap(np.interp(np.arange(16), [0, 4, 11, 15], [1.0, 1.2, 6.5, 7.0]), SearchConfig(ceiling=9.0))
K = 4  # fitness windows of the fake fitnesses


def distance(c: Candidate) -> float:
    return sum((a - b) ** 2 for a, b in zip(c.factors, TARGET))


def same_on_every_window(values, windows):
    """NLL log(1 + value) on each window asked for: fitness 1 + value, up to rounding."""
    return [WindowScores(((math.log1p(v),) * len(range(K)[windows]),)) for v in values]


def ramp_fitness(batch, windows):
    return same_on_every_window([distance(c) + (0.0 if c.n_hat == 8 else 1.0) for c in batch], windows)


class Recorder:
    """Fitness wrapper remembering every call; raises on call number `crash_at` like a dying evaluator would."""

    def __init__(self, fn=ramp_fitness, crash_at=None):
        self.fn, self.crash_at, self.calls = fn, crash_at, []  # calls: (windows, batch, scores)

    def __call__(self, batch, windows):
        if len(self.calls) == self.crash_at:
            raise RuntimeError("evaluator died")
        values = self.fn(batch, windows)
        self.calls.append((windows, list(batch), values))
        return values

    @property
    def batches(self):
        return [batch for _, batch, _ in self.calls]

    @property
    def seen(self):
        return [c for b in self.batches for c in b]

    @property
    def pairs(self):
        """Every (candidate, window index) scored."""
        return [(c, k) for windows, batch, _ in self.calls for c in batch for k in range(K)[windows]]


def logged_pairs(path):
    """Every (candidate, window index) whose score the log holds; a last line cut short by a kill is not read."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.endswith("}")]
    return [(Candidate(tuple(e["factors"]), e["n_hat"]), k) for line in lines if "rung" in line
            for e in line["scored"] for k in range(K)[slice(*line["windows"])]]


def timeless(history):
    """Records without `seconds`, the one field that differs between otherwise identical runs."""
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]


def run(tmp_path, name="log.jsonl", fitness=ramp_fitness, **overrides):
    return search(fitness, SEEDS, SearchConfig(**{**SMALL, **overrides}), tmp_path / name)


def test_converges_to_known_optimum_and_preferred_n_hat(tmp_path):
    result = run(tmp_path, generations=30)
    best_seed = min(distance(Candidate(snap(s, SearchConfig(ceiling=9.0)))) for s in SEEDS)
    assert distance(result.best) < 0.1 * best_seed
    assert result.best.n_hat == 8
    assert result.evaluations == 24 + 30 * 16
    assert [h["generation"] for h in result.history] == list(range(31))
    assert all(a["best"] >= b["best"] for a, b in zip(result.history, result.history[1:]))  # top-k survives


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_every_evaluated_candidate_is_valid_and_new(tmp_path, seed):
    cfg = dict(ceiling=3.337, floor=1.0, population=16, parents=8, mutations=6, crossovers=6, generations=12)
    rec = Recorder()
    short_seeds = [[1.0] * 8, [3.3] * 8, [1.0, 1.0, 1.4, 2.0, 2.6, 3.1, 3.3, 3.3]]
    search(rec, short_seeds, SearchConfig(**cfg, n_hat_candidates=N_HATS, seed=seed), tmp_path / "log.jsonl")
    seen = rec.seen
    assert len(seen) == len(set(seen)) == 16 + 12 * 12
    assert all(windows == slice(0, None) for windows, _, _ in rec.calls)  # no cheaper rungs: all windows at once
    for c in seen:
        f = np.array(c.factors)
        assert len(f) == 8 and (np.diff(f) >= 0).all() and f.min() >= 1.0 and f.max() <= 3.33
        assert (abs(f * 100 - np.round(f * 100)) < 1e-9).all()
        assert c.n_hat in N_HATS
    assert all(Candidate(snap(s, SearchConfig(**cfg))) in seen for s in short_seeds)  # seeds are individuals
    assert len({c.n_hat for c in seen}) > 1  # n̂ is explored


def test_same_seed_same_search_other_seed_other_search(tmp_path):
    a, b = run(tmp_path, "a.jsonl", generations=6), run(tmp_path, "b.jsonl", generations=6)
    c = run(tmp_path, "c.jsonl", generations=6, seed=7)
    assert (a.best, a.best_fitness, timeless(a.history)) == (b.best, b.best_fitness, timeless(b.history))
    assert timeless(a.history) != timeless(c.history)


def test_non_finite_fitness_never_wins(tmp_path):
    def poisoned(batch, windows):  # the better half of the space is NaN or inf: the search must route around it
        values = [distance(c) + (0.0 if c.n_hat == 8 else 1.0) for c in batch]
        return same_on_every_window([v if v > 12.0 else (math.nan if c.n_hat % 2 else math.inf)
                                     for c, v in zip(batch, values)], windows)

    result = run(tmp_path, fitness=poisoned, generations=8)
    assert math.isfinite(result.best_fitness) and result.best_fitness > 12.9
    assert sum(h["non_finite"] for h in result.history) > 0
    assert all(math.isfinite(h["best"]) for h in result.history)


def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    straight = run(tmp_path, "straight.jsonl", generations=10)
    crashed = Recorder(crash_at=6)  # batch 6 is generation 6: the log holds generations 0-5
    with pytest.raises(RuntimeError, match="evaluator died"):
        run(tmp_path, fitness=crashed, generations=10)
    assert len(generation_records(tmp_path / "log.jsonl")) == 6
    replayed, resumed = [], Recorder()
    result = search(resumed, SEEDS, SearchConfig(**SMALL, generations=10), tmp_path / "log.jsonl", replayed.append)
    assert (result.best, result.best_fitness) == (straight.best, straight.best_fitness)
    assert timeless(result.history) == timeless(straight.history)
    assert (result.evaluations, result.cache_hits) == (straight.evaluations, straight.cache_hits)
    assert result.window_evaluations == straight.window_evaluations == K * straight.evaluations
    assert not set(resumed.seen) & set(crashed.seen)
    assert len(resumed.batches) == 5 and timeless(replayed) == timeless(straight.history)
    # a finished log is a finished search: nothing is evaluated again
    again = Recorder()
    assert run(tmp_path, fitness=again, generations=10).history == result.history and not again.batches


def test_truncated_last_line_is_dropped(tmp_path):
    straight = run(tmp_path, "straight.jsonl", generations=6)
    with pytest.raises(RuntimeError):
        run(tmp_path, fitness=Recorder(crash_at=4), generations=6)
    log = tmp_path / "log.jsonl"
    text = log.read_text()
    log.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2])  # killed while writing generation 3's record
    resumed = Recorder()
    result = run(tmp_path, fitness=resumed, generations=6)
    assert (result.best, timeless(result.history)) == (straight.best, timeless(straight.history))
    assert len(resumed.batches) == 3  # generation 3's scores were logged before its record: read back, not redone
    assert [r["generation"] for r in generation_records(log)] == list(range(7))
    assert len(log.read_text().splitlines()) == 1 + 2 * 7  # per generation: its scores, its record


def test_log_from_another_config_or_seeds_is_refused(tmp_path):
    run(tmp_path, generations=1)
    with pytest.raises(ValueError, match="delete it"):
        run(tmp_path, generations=1, mutation_prob=0.5)
    with pytest.raises(ValueError, match="delete it"):
        search(ramp_fitness, SEEDS[:2], SearchConfig(**SMALL, generations=1), tmp_path / "log.jsonl")


KILLED_SEARCH = """
import sys, time
from longrope.search.engine import SearchConfig, search
from tests.test_search import SEEDS, SMALL, ramp_fitness
def slow(batch, windows):
    time.sleep(0.05)
    return ramp_fitness(batch, windows)
search(slow, SEEDS, SearchConfig(**SMALL, generations=40, fidelity=tuple(map(int, sys.argv[2:]))), sys.argv[1])
"""


@pytest.mark.parametrize("fidelity", [(), (1,)])
def test_resume_after_sigkill(tmp_path, fidelity):
    log = tmp_path / "log.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SEARCH, str(log), *map(str, fidelity)], cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while (not log.exists() or log.read_text().count('"median"') < 3) and time.monotonic() < deadline:
        assert proc.poll() is None, "the search subprocess exited early"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = log.read_text().count('"median"')  # generation records
    assert 3 <= done < 41
    logged = logged_pairs(log)
    rec = Recorder()
    result = run(tmp_path, fitness=rec, generations=40, fidelity=fidelity)
    straight = Recorder()
    expected = run(tmp_path, "straight.jsonl", fitness=straight, generations=40, fidelity=fidelity)
    assert (result.best, timeless(result.history)) == (expected.best, timeless(expected.history))
    # nothing the log holds is scored again; only a batch being scored when killed is lost, and redone
    assert not set(rec.pairs) & set(logged)
    assert Counter(rec.pairs) + Counter(logged) == Counter(straight.pairs)


def test_early_stop_on_flat_fitness(tmp_path):
    flat = Recorder(lambda batch, windows: same_on_every_window([1.0] * len(batch), windows))
    result = run(tmp_path, fitness=flat, generations=40, early_stop_window=3)
    assert len(result.history) == 4 and len(flat.batches) == 4


def test_exhausted_space_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="exhausted"):
        search(ramp_fitness, [[1.0, 1.0]], SearchConfig(ceiling=1.01, population=8, parents=4), tmp_path / "log.jsonl")


def test_snap_grid_clip_monotone():
    cfg = SearchConfig(ceiling=4.0)
    assert snap([0.5, 1.234, 1.2, 99.0], cfg) == (1.0, 1.23, 1.23, 4.0)
    assert snap([1.005 + 0.01 * i for i in range(300)], cfg)[-1] == 4.0
    assert snap([2.0, 1.5, 3.0], SearchConfig(ceiling=2.675, step=0.25, floor=1.1)) == (2.0, 2.0, 2.5)
    for bad in ([], [1.0, math.nan], [[1.0]]):
        with pytest.raises(ValueError):
            snap(bad, cfg)


@pytest.mark.parametrize(
    "field, value",
    [("floor", 0.0), ("ceiling", 0.5), ("step", 0.0), ("population", 0), ("parents", 65), ("parents", 1),
     ("mutations", -1), ("generations", -1), ("mutation_prob", 0.0), ("mutation_prob", 1.5),
     ("max_crossover_tries", 0), ("n_hat_candidates", ()), ("n_hat_candidates", (0, -4)), ("n_hat_candidates", (0, 0)),
     ("n_hat_candidates", (0, 1.5)), ("early_stop_window", 0), ("fidelity", (0,)), ("fidelity", (2, 1)),
     ("fidelity", (1, 1)), ("fidelity", (1.5,)), ("promote", 0.0), ("promote", -0.5), ("promote", 1.5)],
)  # fmt: skip
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"SearchConfig.{field} "):
        SearchConfig(**{"ceiling": 2.0, field: value})


def test_bad_seeds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        search(ramp_fitness, [[1.0, 2.0], [1.0]], SearchConfig(ceiling=2.0), tmp_path / "log.jsonl")
    with pytest.raises(ValueError, match="seeds"):
        search(ramp_fitness, [], SearchConfig(ceiling=2.0), tmp_path / "log.jsonl")


# Multi-fidelity: a coarse grid, so the known optimum is reachable exactly. A score on fewer windows is noisier (noise
# fixed per candidate and window, as fixed fitness windows give); the full-fidelity score is exact.
COARSE = dict(ceiling=4.0, step=0.25, population=24, parents=12, mutations=8, crossovers=8, n_hat_candidates=N_HATS)
COARSE_SEEDS = [[4.0] * 8, [4 ** (i / 7) for i in range(8)], [1.0] * 3 + [2.0, 3.0] + [4.0] * 3]
OPTIMUM = Candidate(snap(np.interp(np.arange(8), [0, 2, 5, 7], [1.0, 1.25, 3.0, 3.5]), SearchConfig(**COARSE)), 8)


def noisy_fitness(batch, windows):
    """NLL = the distance to the optimum plus noise per window: multiples of 1/64 that sum to zero over the K windows,
    so that the mean over all of them is the distance exactly (such numbers add without rounding)."""
    scores = []
    for c in batch:
        exact = sum((a - b) ** 2 for a, b in zip(c.factors, OPTIMUM.factors)) + 0.5 * (c.n_hat != 8)
        noise = np.round(np.random.default_rng([*(round(x * 100) for x in c.factors), c.n_hat]).normal(0, 6.4, K - 1))
        noise = [*noise / 64, -noise.sum() / 64]
        scores.append(WindowScores(([exact + n for n in noise[windows]],)))
    return scores


def windows_spent(fidelity, new=(24,) + (16,) * 20, promote=1 / 3):
    """Windows scored when each rung's survivors are scored on its windows only (reuse), and when scored on all
    windows up to the rung's last (rescoring): per generation, n new candidates, ceil(n/3) of each rung promoted."""
    reuse = rescore = 0
    for n in new:
        for first, last in zip((0, *fidelity), (*fidelity, K)):
            reuse, rescore, n = reuse + n * (last - first), rescore + n * last, math.ceil(promote * n - 1e-9)
    return reuse, rescore


def coarse(tmp_path, name="log.jsonl", fitness=noisy_fitness, **overrides):
    return search(fitness, COARSE_SEEDS, SearchConfig(**{**COARSE, "generations": 20, **overrides}), tmp_path / name)


@pytest.mark.parametrize("fidelity", [(1,), (1, 2)])
def test_multi_fidelity_finds_optimum_with_fewer_full_evaluations(tmp_path, fidelity):
    single, multi = coarse(tmp_path, "single.jsonl"), coarse(tmp_path, "multi.jsonl", fidelity=fidelity)
    assert single.best == multi.best == OPTIMUM and single.best_fitness == multi.best_fitness == 1.0  # exp(0)

    def to_optimum(result):  # full evaluations spent when the optimum is first the best
        return next(h["full_evaluations"] for h in result.history if h["best"] == 1.0)

    full = [r.history[-1]["full_evaluations"] for r in (single, multi)]
    assert multi.evaluations == single.evaluations == full[0] == 24 + 20 * 16  # as many candidates, fewer fully scored
    assert full[1] == (8 + 20 * 6 if fidelity == (1,) else 3 + 20 * 2)  # ceil(n/3) per rung: 24 → 8 → 3, 16 → 6 → 2
    assert to_optimum(multi) <= 0.5 * to_optimum(single)
    assert single.window_evaluations == K * single.evaluations
    assert multi.window_evaluations == windows_spent(fidelity)[0] == (728 if fidelity == (1,) else 558)


def test_full_fidelity_exactly_for_promoted_candidates(tmp_path):
    spy = Recorder(noisy_fitness)
    result = coarse(tmp_path, fitness=spy, generations=6, fidelity=(1, 2))
    assert [w for w, _, _ in spy.calls] == [slice(0, 1), slice(1, 2), slice(2, None)] * 7  # three rungs a generation
    so_far = {}  # each candidate's scores on the windows it has seen
    for (_, batch, scores), (_, promoted, _) in zip(spy.calls, spy.calls[1:]):
        so_far.update((c, so_far[c] + s if c in so_far else s) for c, s in zip(batch, scores))
        if promoted[0] not in batch:
            continue  # a full rung, then the next generation's first rung
        best_first = sorted(batch, key=lambda c: so_far[c].fitness)  # stable, as the engine's
        assert promoted == best_first[: math.ceil(len(batch) / 3)]
    full = [c for w, batch, _ in spy.calls if w.stop is None for c in batch]
    records = generation_records(tmp_path / "log.jsonl")
    assert full == [Candidate(tuple(e["factors"]), e["n_hat"]) for r in records for e in r["evaluated"]
                    if e["windows"] is None]
    last = result.history[-1]
    assert last["full_evaluations"] == len(full) == len(set(full))
    assert last["window_evaluations"] == len(spy.pairs) == len(set(spy.pairs))
    assert last["evaluations"] == len(set(spy.seen))
    for r in records:  # full fidelity first, then by rung reached; the best is the best full score
        windows = [math.inf if e["windows"] is None else e["windows"] for e in r["population"]]
        assert windows == sorted(windows, reverse=True) and r["best"] == r["population"][0]["fitness"]
        assert r["population"][0]["windows"] is None


def test_multi_fidelity_same_seed_same_log(tmp_path):
    coarse(tmp_path, "a.jsonl", fidelity=(1, 2), generations=6)
    coarse(tmp_path, "b.jsonl", fidelity=(1, 2), generations=6)

    def read(name):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (tmp_path / name).read_text().splitlines()]

    assert read("a.jsonl") == read("b.jsonl")


@pytest.mark.parametrize("crash_at", [2 * 6, 2 * 6 + 1])  # generation 6 at its first (1 window) or its last rung
def test_multi_fidelity_resume_after_crash(tmp_path, crash_at):
    straight = Recorder(noisy_fitness)
    expected = coarse(tmp_path, "straight.jsonl", fitness=straight, fidelity=(1,), generations=10)
    with pytest.raises(RuntimeError, match="evaluator died"):
        coarse(tmp_path, fitness=Recorder(noisy_fitness, crash_at=crash_at), fidelity=(1,), generations=10)
    resumed = Recorder(noisy_fitness)
    result = coarse(tmp_path, fitness=resumed, fidelity=(1,), generations=10)
    assert (result.best, result.best_fitness) == (expected.best, expected.best_fitness)
    assert timeless(result.history) == timeless(expected.history)
    assert resumed.calls == straight.calls[crash_at:]  # from the batch that failed on: the logged ones are read back
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(result.history, result.history[1:]))  # summed over runs


@pytest.mark.parametrize("fidelity", [(1,), (1, 2)])
def test_no_candidate_is_scored_twice_on_a_window_across_a_resume(tmp_path, fidelity):
    straight = Recorder(noisy_fitness)
    expected = coarse(tmp_path, "straight.jsonl", fitness=straight, fidelity=fidelity, generations=10)
    rungs = len(fidelity) + 1
    crashed = Recorder(noisy_fitness, crash_at=rungs * 6 + rungs - 1)  # generation 6, its cheaper rungs scored
    with pytest.raises(RuntimeError, match="evaluator died"):
        coarse(tmp_path, fitness=crashed, fidelity=fidelity, generations=10)
    resumed = Recorder(noisy_fitness)
    result = coarse(tmp_path, fitness=resumed, fidelity=fidelity, generations=10)
    pairs = crashed.pairs + resumed.pairs
    assert len(pairs) == len(set(pairs)) and Counter(pairs) == Counter(straight.pairs)
    assert len(straight.pairs) == len(set(straight.pairs)) == expected.window_evaluations
    assert (result.best, timeless(result.history)) == (expected.best, timeless(expected.history))
    # the saving: a promoted candidate is not rescored on the windows of the rungs below
    reuse, rescore = windows_spent(fidelity, new=(24,) + (16,) * 10)
    assert result.window_evaluations == reuse < rescore
    print(f"fidelity {list(fidelity)}: {reuse} windows scored, {rescore} with rescoring "
          f"({1 - reuse / rescore:.1%} saved)")


def rough_fitness(batch, windows):
    """NLL per window with no exact structure: float noise of a seed per candidate and window."""
    def nll(c, k):
        return 2.0 + 0.1 * np.random.default_rng([*(round(x * 100) for x in c.factors), c.n_hat, k]).normal()
    return [WindowScores(([nll(c, k) for k in range(K)[windows]],)) for c in batch]


def test_a_promoted_candidates_fitness_is_its_fitness_on_all_windows_at_once(tmp_path):
    result = coarse(tmp_path, fitness=rough_fitness, fidelity=(1, 2), generations=4)
    full = [(Candidate(tuple(e["factors"]), e["n_hat"]), e["fitness"])
            for r in generation_records(tmp_path / "log.jsonl") for e in r["evaluated"] if e["windows"] is None]
    assert len(full) == 3 + 4 * 2
    for c, fitness in full:
        assert fitness == rough_fitness([c], slice(0, None))[0].fitness  # exactly, not approximately
    assert result.best_fitness == min(f for _, f in full)


def test_window_scores_extend_to_the_scores_on_all_windows():
    nll = np.random.default_rng(0).normal(3.0, 1.0, (2, 5))  # two fitness lengths (recovery), five windows
    whole = WindowScores(nll)
    parts = WindowScores(nll[:, :1]) + WindowScores(nll[:, 1:3]) + WindowScores(nll[:, 3:])
    assert parts == whole and parts.fitness == whole.fitness and whole.count == 10
    assert whole.fitness == pytest.approx(math.exp(nll.mean()))  # the geometric mean of the lengths' perplexities
    assert WindowScores([[800.0], [1.0]]).fitness == math.inf  # a diverging scaling, not an overflow
    with pytest.raises(ValueError, match="2 fitness lengths"):
        WindowScores([[1.0]]) + whole


@pytest.mark.parametrize("version", ["before multi-fidelity", "rescoring promoted candidates"])
def test_logs_of_previous_formats_are_refused(tmp_path, version):
    run(tmp_path, generations=1)
    log = tmp_path / "log.jsonl"
    old = [line for line in map(json.loads, log.read_text().splitlines()) if "rung" not in line]
    del old[0]["format"]
    if version == "before multi-fidelity":
        for key in ("fidelity", "promote"):
            del old[0]["config"][key]
        for rec in old[1:]:
            for key in ("full_evaluations", "window_evaluations", "seconds"):
                del rec[key]
            for e in rec["population"] + rec["evaluated"]:
                del e["windows"]
    log.write_text("".join(json.dumps(line) + "\n" for line in old))
    with pytest.raises(ValueError, match="delete it"):
        run(tmp_path, generations=1)


def test_config_from_settings_fidelity_is_optional():
    settings = dict(ceiling="paper", population=8, mutations=2, crossovers=2, parents=4, generations=3,
                    mutation_prob=0.3, n_hat=[0, 4], early_stop_window=None, seed=1)
    assert config_from_settings(settings, 4.0) == SearchConfig(
        ceiling=5.0, population=8, mutations=2, crossovers=2, parents=4, generations=3, n_hat_candidates=(0, 4), seed=1)
    cfg = config_from_settings({**settings, "fidelity": [1, 2], "promote": 0.5}, 4.0)
    assert (cfg.fidelity, cfg.promote) == ((1, 2), 0.5)

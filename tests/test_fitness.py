"""longrope.search.fitness: fitness spread over several model replicas gives exactly the one-replica search; batched
candidates, a part of the windows and scored masks score as their definitions one by one; scores on parts of the
windows put together are exactly the scores on all of them."""
import time

import numpy as np
import pytest

from longrope.search.fitness import FitnessPool, FitnessSpec
from longrope.rope import RopeScaling
from longrope.search.engine import SearchConfig, search


@pytest.fixture
def spec(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    tokens = np.random.default_rng(0).integers(0, 256, (3, 64))
    return FitnessSpec(str(tmp_path / "model"), "sdpa", RopeScaling("pi", 32, 64), (tokens,))


def scalings(candidates):
    return [RopeScaling("longrope", 32, 64, factors=tuple(c.factors), n_hat=c.n_hat) for c in candidates]


def test_two_workers_find_exactly_the_one_worker_factors(spec, tmp_path):
    cfg = SearchConfig(ceiling=2.5, population=8, mutations=3, crossovers=3, parents=4, generations=3,
                       n_hat_candidates=(0, 2, 4))
    seeds = [[2.0] * 8, [2 ** (i / 7) for i in range(8)], [1.0] * 3 + [2.0] * 5]
    results, seconds = {}, {}
    for workers in (1, 2):
        start = time.perf_counter()
        with FitnessPool(spec, workers=workers, threads=2) as pool:
            results[workers] = search(lambda c, windows: pool(scalings(c), windows), seeds, cfg,
                                      tmp_path / f"log{workers}.jsonl")
        seconds[workers] = time.perf_counter() - start
    print(f"search with 1 worker {seconds[1]:.1f} s, 2 workers {seconds[2]:.1f} s")
    one, two = results[1], results[2]
    assert one.evaluations == two.evaluations == 8 + 3 * 6
    assert two.best == one.best and two.best_fitness == one.best_fitness
    assert [h["best"] for h in two.history] == [h["best"] for h in one.history]


def test_scores_do_not_depend_on_the_worker(spec):
    candidates = [RopeScaling("longrope", 32, 64, factors=tuple(np.linspace(1, s, 8)), n_hat=n)
                  for s in (1.5, 2.0, 3.0) for n in (0, 4)]
    with FitnessPool(spec, workers=1) as pool:
        one = pool(candidates)
    with FitnessPool(spec, workers=3, threads=3) as pool:
        three = pool(candidates)
        reversed_three = pool(candidates[::-1])  # each candidate lands on another worker
    assert three == one and reversed_three == one[::-1]
    assert len(set(one)) == len(one)


def test_a_failing_worker_raises_with_its_error(spec):
    bad = FitnessSpec(spec.model, spec.attention, RopeScaling("longrope", 32, 64, factors=(1.0, 2.0)), spec.windows)
    with pytest.raises(RuntimeError, match="fitness worker 0 failed:(.|\n)*expected 8 factors"):
        FitnessPool(bad, workers=2)


@pytest.fixture
def two_length_spec(tmp_path, tiny_model):
    """Two fitness lengths (a recovery search), and masks that score a part of each window."""
    tiny_model.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(1)
    windows = (rng.integers(0, 256, (3, 64)), rng.integers(0, 256, (2, 40)))
    scored = (rng.random((3, 64)) < 0.3, None)
    return FitnessSpec(str(tmp_path / "model"), "sdpa", RopeScaling("pi", 32, 64), windows, scored=scored)


def five_candidates():
    return [RopeScaling("longrope", 32, 64, factors=tuple(np.linspace(1, s, 8)), n_hat=n)
            for s, n in [(1.5, 0), (2.0, 4), (3.0, 0), (2.5, 8), (1.2, 2)]]


def fitness(scores):
    return [s.fitness for s in scores]


def one_by_one(spec, scalings, windows=None):
    """The definition: evaluate.perplexity of each scaling on each length, geometric mean over lengths."""
    from longrope.evaluation.perplexity import perplexity
    from longrope.model import load_model
    from longrope.patching import apply_rope_scaling

    model = load_model(spec.model, attention=spec.attention)
    scored = spec.scored or (None,) * len(spec.windows)
    return [np.exp(np.mean([np.log(perplexity(apply_rope_scaling(model, s, verify=False), w[:windows],
                                              None if m is None else m[:windows]).ppl)
                            for w, m in zip(spec.windows, scored)])) for s in scalings]


@pytest.mark.parametrize("batch", [2, 4])  # neither divides the 5 candidates
def test_batched_candidates_score_as_one_by_one(two_length_spec, batch):
    expected = one_by_one(two_length_spec, five_candidates())
    with FitnessPool(two_length_spec, batch=batch) as pool:
        np.testing.assert_allclose(fitness(pool(five_candidates())), expected, rtol=1e-5)
    assert len(set(np.round(expected, 6))) == 5


def test_the_first_windows_score_as_a_spec_of_those_windows(two_length_spec):
    first = FitnessSpec(two_length_spec.model, "sdpa", two_length_spec.probe,
                        tuple(w[:1] for w in two_length_spec.windows), scored=(two_length_spec.scored[0][:1], None))
    with FitnessPool(first) as pool:
        expected = fitness(pool(five_candidates()))
    with FitnessPool(two_length_spec, workers=2, threads=2, batch=2) as pool:  # `windows` reaches the workers
        np.testing.assert_allclose(fitness(pool(five_candidates(), slice(0, 1))), expected, rtol=1e-5)
        np.testing.assert_allclose(fitness(pool(five_candidates())), one_by_one(two_length_spec, five_candidates()),
                                   rtol=1e-5)
    assert not np.allclose(expected, one_by_one(two_length_spec, five_candidates()))


@pytest.mark.parametrize("workers, batch", [(1, 1), (2, 2)])
def test_scores_on_the_remaining_windows_complete_the_scores_on_all(two_length_spec, workers, batch):
    """What a promoted candidate gets: its scores on the first window, then on the others, are exactly its scores on
    all windows at once — masks, two lengths, several workers and batches included."""
    with FitnessPool(two_length_spec, workers=workers, threads=2, batch=batch) as pool:
        first, rest, whole = (pool(five_candidates(), w) for w in (slice(0, 1), slice(1, None), slice(None)))
    assert [a + b for a, b in zip(first, rest)] == whole
    assert [len(n) for n in rest[0].nll] == [2, 1]  # 3 and 2 windows at the two lengths
    np.testing.assert_allclose(fitness(whole), one_by_one(two_length_spec, five_candidates()), rtol=1e-5)


def test_a_spec_checks_its_masks(two_length_spec):
    with pytest.raises(ValueError, match="scored has 1 entries for 2 windows arrays"):
        FitnessSpec(two_length_spec.model, "sdpa", two_length_spec.probe, two_length_spec.windows, scored=(None,))
    with pytest.raises(ValueError, match="bool array"):
        FitnessSpec(two_length_spec.model, "sdpa", two_length_spec.probe, two_length_spec.windows,
                    scored=(None, np.ones((2, 39), dtype=bool)))

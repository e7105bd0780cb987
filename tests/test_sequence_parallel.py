"""longrope.sequence_parallel: one sequence split over two CPU ranks (gloo) scores and trains as on one rank."""
import numpy as np
import pytest

from longrope.fitness import FitnessPool, FitnessSpec
from longrope.rope import RopeScaling


@pytest.fixture
def spec(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    # 64 and 46 tokens: 63 and 45 inputs, neither divisible by 2 ranks; the scaling switches factor sets at 48
    windows = (rng.integers(0, 256, (2, 64)), rng.integers(0, 256, (2, 46)))
    return FitnessSpec(str(tmp_path / "model"), "sdpa", RopeScaling("pi", 32, 64), windows)


def candidates():
    return [RopeScaling("longrope", 32, 64, factors=tuple(np.linspace(1, s, 8)), n_hat=n,
                        short_factors=(1.0,) * 8, short_length=48) for s in (1.5, 3.0) for n in (0, 4)]


def test_two_ranks_score_the_one_rank_perplexities(spec):
    with FitnessPool(spec, workers=1, threads=2) as pool:
        one = pool(candidates())
    with FitnessPool(spec, workers=1, threads=2, sequence=2) as pool:
        two = pool(candidates())
    np.testing.assert_allclose(two, one, rtol=1e-5)
    assert len(set(one)) == len(one)  # the candidates differ, so equal scores are not a coincidence


def test_two_workers_of_two_ranks_score_the_one_rank_perplexities(spec):
    with FitnessPool(spec, workers=1) as pool:
        one = pool(candidates())
    with FitnessPool(spec, workers=2, threads=2, sequence=2) as pool:
        four = pool(candidates())
    np.testing.assert_allclose(four, one, rtol=1e-5)

"""longrope.factors: factors.json and factors.csv written and read by their one owner."""
import json

import numpy as np
import pytest

from longrope.factors import FoundFactors, load_factors
from longrope.rope import RopeScaling

LONG = (1.0, 1.5, 4.0, 8.0)


def found(scaling: RopeScaling, scale: float) -> FoundFactors:
    return FoundFactors(stage="short", scaling=scaling, scale=scale, fitness_ppl=5.2, fitness_samples=2,
                        evaluations=10, cache_hits=1, search={"mode": "recovery", "ceiling_value": 3.0},
                        model="results/finetune/256k/model", critical_dimension=6, dtype="float32")


def test_a_recovery_search_saves_its_short_set_and_its_own_length(tmp_path):
    scaling = RopeScaling("longrope", 32, 256, factors=LONG, short_factors=(1.0, 1.0, 1.2, 1.5), short_length=64)
    found(scaling, 2.0).save(tmp_path / "factors.json", tmp_path / "factors.csv")
    record = json.loads((tmp_path / "factors.json").read_text())
    assert record["target_length"] == 64 and record["scaling"]["target_length"] == 256  # the stage's, the scaling's
    assert record["attention_factor"] == pytest.approx(scaling.attention_scale) and record["dtype"] == "float32"
    assert np.loadtxt(tmp_path / "factors.csv").tolist() == [1.0, 1.0, 1.2, 1.5]  # the searched set
    again = FoundFactors.load(tmp_path / "factors.json")
    assert again == found(scaling, 2.0) and again.target_length == 64
    assert load_factors(tmp_path / "factors.json") == scaling


def test_a_scaling_written_by_hand_loads_and_a_foreign_file_is_refused(tmp_path):
    scaling = RopeScaling("longrope", 32, 128, factors=LONG)
    (tmp_path / "hand.json").write_text(json.dumps({"scaling": scaling.to_dict()}))
    assert load_factors(tmp_path / "hand.json") == scaling
    with pytest.raises(ValueError, match="not a factors.json of this workflow"):
        FoundFactors.load(tmp_path / "hand.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'scaling' entry"):
        load_factors(tmp_path / "other.json")

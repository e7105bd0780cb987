"""longrope.parallelism.memory and longrope.tools.plan_memory: parameter counts of the paper's models, and paper
configs that use the planner's answers."""
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from longrope.parallelism.memory import Architecture, Job, memory, sequence_split_error, smallest_sequence

ARCHITECTURES = ROOT / "config" / "paper" / "architectures"


@pytest.mark.parametrize("name, parameters", [("Llama-2-7b-hf", 6_738_415_616), ("Mistral-7B-v0.1", 7_241_732_096),
                                              ("Phi-3-mini-4k-instruct", 3_821_079_552)])
def test_parameter_counts_are_the_published_ones(name, parameters):
    assert Architecture.from_config(json.loads((ARCHITECTURES / f"{name}.json").read_text())).parameters == parameters


def test_sequence_parallelism_divides_activations_not_weights():
    llama = Architecture.from_config(json.loads((ARCHITECTURES / "Llama-2-7b-hf.json").read_text()))
    one, four = (memory(llama, Job("train", 262_144, n, ranks=16, zero=3, offload_params=True,
                                   offload_optimizer=True, checkpointing=True)) for n in (1, 4))
    for part in ("activations", "attention", "mlp"):
        assert four[part] == pytest.approx(one[part] / 4)
    assert four["weights"] == one["weights"] and four["optimizer"] == one["optimizer"] == 0
    assert smallest_sequence(llama, Job("score", 2_097_152), 72e9, 8) == 8
    assert smallest_sequence(llama, Job("score", 2_097_152), 72e9, 4) is None


def test_heads_must_split_evenly():
    assert sequence_split_error(32, 8, 8) is None and sequence_split_error(32, 8, 16) is None  # KV heads replicated
    assert "attention heads" in sequence_split_error(32, 32, 3)
    assert "KV heads" in sequence_split_error(24, 6, 4)


@pytest.mark.parametrize("config", ["llama2-7b", "mistral-7b", "phi3-mini"])
def test_paper_configs_use_the_planners_answers(config):
    """Every job fits one 80 GB GPU at the config's parallel.sequence, and no smaller N would: each row's N is the
    planner's smallest, except searches that share their stage's N with its fine-tune."""
    done = subprocess.run([sys.executable, "-m", "longrope.tools.plan_memory", "--configfile",
                           str(ROOT / "config" / "paper" / f"{config}.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if re.match(r"\| \S+ \| (search|fine|perp)", line)]
    assert len(rows) >= 4
    for stage, job, _, n, *_, fits, smallest in rows:
        assert fits == "yes", (stage, job)
        if job != "search fitness" or stage == "2048k":
            assert int(smallest.rstrip(" |")) == int(n), (stage, job)

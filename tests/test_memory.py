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


@pytest.mark.parametrize("name", ["Llama-2-7b-hf", "Mistral-7B-v0.1"])
@pytest.mark.parametrize("gpus_per_node, nodes", [(1, 1), (8, 1), (8, 2), (4, 4)])
@pytest.mark.parametrize("offload_params, offload_optimizer", [(False, False), (False, True), (True, True)])
def test_zero3_model_states_are_deepspeeds_estimate_but_for_two_explained_terms(name, gpus_per_node, nodes,
                                                                               offload_params, offload_optimizer):
    """Per-GPU bytes of weights, gradients and optimizer states under ZeRO-3 against DeepSpeed's
    estimate_zero3_model_states_mem_needs (what estimate_zero3_model_states_mem_needs_all_cold prints, in bytes);
    it has no estimate for parameters offloaded without the optimizer. Both share the states over every GPU of
    every node. They differ by design in two terms, asserted exactly (to the byte DeepSpeed's int() truncates):
    * the gathered weights: DeepSpeed gathers module by module, and takes 4 bytes (a 16-bit weight and its
      gradient) per parameter of the largest module (here the embedding); the planner counts two whole 16-bit
      decoder layers, the one computing and the one prefetched;
    * the partitioned states: DeepSpeed takes 18 bytes a parameter (16-bit weight, fp32 master, fp32 gradient, two
      fp32 moments), the planner 16 (a 16-bit gradient instead of the fp32 one): the step converts the gradients
      to fp32 one optimizer sub-group at a time after the backward has freed its activations, so the planner's
      peak, which is the backward's, holds the 16-bit gradients only."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    a = Architecture.from_config(json.loads((ARCHITECTURES / f"{name}.json").read_text()))
    ranks = gpus_per_node * nodes
    planned = memory(a, Job("train", 4096, ranks=ranks, zero=3, offload_params=offload_params,
                            offload_optimizer=offload_optimizer, checkpointing=True))
    # DeepSpeed's "layer" counts a module's own parameters (model_to_params): a decoder layer's sit in its
    # projections, the largest of which (an MLP matrix) is smaller than the embedding here
    largest_module = max(a.vocab * a.hidden, a.hidden * a.intermediate)
    _, deepspeed, _ = estimate_zero3_model_states_mem_needs(
        total_params=a.parameters, largest_layer_params=largest_module, num_gpus_per_node=gpus_per_node,
        num_nodes=nodes, cpu_offload=offload_optimizer, cpu_offload_params=offload_params)
    gathered = {"planner": 2 * a.layer_parameters * 2, "deepspeed": 4 * largest_module}
    fp32_gradients = 0 if offload_optimizer else 2 * a.parameters / ranks  # 4 bytes where the planner has 2
    model_states = planned["weights"] + planned["gradients"] + planned["optimizer"]
    assert model_states - gathered["planner"] + gathered["deepspeed"] + fp32_gradients == pytest.approx(deepspeed,
                                                                                                      abs=1)
    assert gathered["planner"] > gathered["deepspeed"]  # these models' decoder layers outweigh their embedding

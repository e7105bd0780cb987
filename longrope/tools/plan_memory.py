"""Per-GPU memory of every heavy job of a workflow config, and the smallest parallel.sequence that fits each.

    longrope-plan-memory --configfile config/paper/llama2-7b.yaml [--gpu-memory-gb 80]

The config is read through the plan (longrope.plan), without requiring the model, tokenizer or books to be here: a
cluster's run can be planned from anywhere. The model's shapes come from the base model's config.json, else from
config/paper/architectures/<folder name>.json (the public config.json values of the paper's models), else, for the
tiny default, from the `pretrain` section. Assumes the GPU run: bf16 and gradient checkpointing where the config says
`auto`. Figures from longrope.parallelism.memory.
"""
import argparse
import json
from pathlib import Path

import yaml

from longrope.parallelism.memory import GIB, Architecture, Job, memory, smallest_sequence
from longrope.plan import Plan
from longrope.training.deepspeed_config import load_deepspeed_config

ROOT = Path(__file__).resolve().parents[2]  # the repository: config/schema.yaml, config/paper/architectures
GPUS_PER_NODE = 8  # search and evaluation replicas stay on one node


def architecture(plan: Plan) -> Architecture:
    if plan.base.source == "pretrain":
        m, tokenizer = plan.config["pretrain"]["model"], plan.config["data"]["tokenizer"]
        return Architecture(m["hidden_size"], m["num_layers"], m["num_heads"], m["num_heads"],
                            m["hidden_size"] // m["num_heads"], m["intermediate_size"],
                            tokenizer.get("vocab_size", 258), tied=True)
    folder = Path(plan.base.folder)
    name = Path(plan.base.repo).name if plan.base.source == "hub" else folder.name  # a hub model before its fetch
    for candidate in (folder / "config.json", ROOT / "config" / "paper" / "architectures" / f"{name}.json"):
        if candidate.is_file() and "num_attention_heads" in (known := json.loads(candidate.read_text())):
            return Architecture.from_config(known)
    raise FileNotFoundError(f"no config.json with the model's shapes for the base model {folder} "
                            "(from base_model.gguf: once converted; from the hub: once fetched)")


def jobs(plan: Plan):
    """(stage, job name, Job at the config's parallel.sequence, largest degree the job could use)."""
    L0 = plan.original_length
    for name, stage in plan.stages.items():
        target, n = round(stage.scale * L0), stage.sequence
        if stage.search:
            yield name, "search fitness", Job("score", target, n), GPUS_PER_NODE // stage.search.workers
        if stage.finetune:
            s = stage.finetune
            zero = (load_deepspeed_config(s.deepspeed) if s.deepspeed else {}).get("zero_optimization", {})
            ranks = s.processes * plan.job_resources("finetune", name).get("nodes", 1)
            rows = s.micro_batch_size or s.batch_size * n // ranks
            yield name, "fine-tune", Job(
                "train", s.seq_len or target, n, value_bytes=4 if s.precision == "fp32" else 2, rows=rows,
                ranks=ranks, zero=zero.get("stage", 0), offload_params="offload_param" in zero,
                offload_optimizer="offload_optimizer" in zero, checkpointing=s.gradient_checkpointing is not False,
                tile_mlp=s.tile_mlp), ranks
    yield "-", "perplexity", Job("score", max(plan.evaluation["lengths"]), plan.sequence_ranks()), GPUS_PER_NODE


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--gpu-memory-gb", type=float, default=80.0, help="memory of one GPU, GB (10^9 bytes)")
    parser.add_argument("--headroom", type=float, default=0.1,
                        help="share of the GPU kept free (CUDA context, allocator fragmentation, buffers not counted)")
    args = parser.parse_args()
    plan = Plan.load(yaml.safe_load(Path(args.configfile).read_text()), ROOT, require_files=False)
    a, budget = architecture(plan), args.gpu_memory_gb * 1e9 * (1 - args.headroom)
    print(f"{Path(args.configfile).name}: {a.parameters / 1e9:.2f} B parameters; per-GPU GiB at the config's "
          f"parallel.sequence N; fits: within {budget / 1e9:.0f} GB ({args.gpu_memory_gb:g} GB less "
          f"{args.headroom:.0%} headroom)")
    print("| stage | job | tokens | N | weights | grads + optimizer | activations | attention / MLP | logits "
          "| total | fits | smallest N that fits |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for stage, name, job, largest in jobs(plan):
        m = {k: v / GIB for k, v in memory(a, job).items()}
        smallest = smallest_sequence(a, job, budget, largest)
        print(f"| {stage} | {name} | {job.length:,} | {job.sequence} | {m['weights']:.1f} | "
              f"{m['gradients'] + m['optimizer']:.1f} | {m['activations']:.1f} | {m['attention']:.1f} / {m['mlp']:.1f} "
              f"| {m['logits']:.1f} | {m['total']:.1f} | {'yes' if m['total'] * GIB <= budget else 'no'} "
              f"| {smallest or f'none up to {largest}'} |")


if __name__ == "__main__":
    main()

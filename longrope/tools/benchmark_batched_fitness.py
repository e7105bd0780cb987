"""Search-fitness throughput with several candidate scalings in one batched forward (longrope.search.fitness.Replica's
`batch`): C random LongRoPE candidates — PI-, NTK- and YaRN-equivalent λ with seeded noise, n̂ random — scored on K
random windows of one length, one by one (batch 1) and B at a time. Reports tokens per second (C · K · length over
the scoring time), the speed-up over batch 1, the largest relative difference of the fitness values from batch 1's,
and on a GPU the peak memory. Without --model: a random tiny Llama of the embedded default's shape.

    .venv/bin/python -m longrope.tools.benchmark_batched_fitness --length 1024 --candidates 16 --batch 1 2 4 8 \\
        --threads 1
"""
import argparse
import time

import numpy as np
import torch
from transformers import AutoConfig

from longrope.model import compute_dtype
from longrope.rope import RopeScaling, equivalent_factors, rope_geometry
from longrope.search.fitness import FitnessSpec, Replica
from longrope.tools.common import model_folder


def candidates(folder: str, length: int, count: int, seed: int) -> list[RopeScaling]:
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    head_dim, base = rope_geometry(config)
    L0 = config.max_position_embeddings
    seeds = [equivalent_factors(RopeScaling(m, L0, length), head_dim, base).numpy() for m in ("pi", "ntk", "yarn")]
    rng = np.random.default_rng(seed)
    scalings = []
    for j in range(count):
        noisy = seeds[j % 3] * np.exp(rng.normal(0, 0.05, head_dim // 2))
        factors = np.maximum.accumulate(noisy.clip(1, 1.25 * length / L0))  # the search's bounds: monotone, ≥ 1
        scalings.append(RopeScaling("longrope", L0, length, factors=tuple(factors),
                                    n_hat=int(rng.choice([0, L0 // 16, L0 // 8]))))
    return scalings


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: a random tiny Llama of the embedded default's shape)")
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--windows", type=int, default=2, help="fitness windows K")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or auto")
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with model_folder(args.model) as folder:
        scalings = candidates(folder, args.length, args.candidates, args.seed)
        vocab = AutoConfig.from_pretrained(folder, local_files_only=True).vocab_size
        windows = np.random.default_rng(args.seed).integers(0, vocab, (args.windows, args.length))
        spec = FitnessSpec(folder, args.attention, scalings[0], (windows,), compute_dtype(args.dtype))
        replica = Replica(spec, 0, args.threads)
        cuda = replica.device.type == "cuda"
        replica(scalings[:1])  # warm-up: first-call allocations and kernel choices

        print(f"{args.candidates} candidates × {args.windows} windows of {args.length} tokens, {spec.dtype}, "
              f"threads {args.threads}, {replica.device}")
        print("| batch | seconds | tokens/s | speed-up | max rel. diff of fitness vs batch 1 | peak GPU MiB |")
        print("|---|---|---|---|---|---|")
        one_by_one = seconds_one = None
        for batch in sorted({1, *args.batch}):  # batch 1 first: the reference
            replica.batch = batch
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            scores = np.asarray([s.fitness for s in replica(scalings)])
            seconds = time.perf_counter() - start
            if batch == 1:
                one_by_one, seconds_one = scores, seconds
            peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if cuda else "–"
            print(f"| {batch} | {seconds:.2f} | {args.candidates * args.windows * args.length / seconds:,.0f} | "
                  f"{seconds_one / seconds:.2f} | {np.max(np.abs(scores / one_by_one - 1)):.1e} | {peak} |", flush=True)
        replica.close()


if __name__ == "__main__":
    main()

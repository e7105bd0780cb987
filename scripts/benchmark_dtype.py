"""bfloat16 against float32 for search fitness: seconds per fitness evaluation, and whether bf16 ranks candidate
scalings as fp32 does (Spearman rank correlation), on the same fitness windows of the target length.

    .venv/bin/python scripts/benchmark_dtype.py --model results/base/model --original-length 8192 --scale 2 \
        --out docs/smollm2/dtype.csv
Candidates, as a search's first generation: PI-, NTK- and YaRN-equivalent λ and seeded random monotone mutants of
them within the paper's bounds [1, 1.25·s].
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from longrope.data import load_tokens, sample_windows
from longrope.evaluate import perplexity
from longrope.model import apply_rope_scaling, load_model, rope_geometry
from longrope.rope import RopeScaling, equivalent_factors
from longrope.search import SearchConfig, snap


def spearman(a, b) -> float:
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def candidates(n: int, original_length: int, scale: float, head_dim: int, base: float, seed: int) -> list[list[float]]:
    cfg = SearchConfig(ceiling=1.25 * scale)
    seeds = [equivalent_factors(RopeScaling(m, original_length, round(scale * original_length)), head_dim, base)
             .numpy() for m in ("pi", "ntk", "yarn")]
    rng = np.random.default_rng(seed)
    mutants = [seeds[i % 3] * np.exp(rng.normal(0, 0.2, len(seeds[0]))) for i in range(n - 3)]
    return [list(snap(f, cfg)) for f in seeds + mutants]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("results/base/model"))
    parser.add_argument("--tokens", type=Path, default=Path("results/data/fitness.npy"))
    parser.add_argument("--original-length", type=int, required=True, help="L0")
    parser.add_argument("--scale", type=float, required=True, help="the fitness length is scale × L0")
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--windows", type=int, default=1, help="fitness windows per candidate")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="CSV, one row per candidate; a JSON summary beside it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    L0, target = args.original_length, round(args.scale * args.original_length)
    models = {name: load_model(args.model, dtype=dtype) for name, dtype in
              (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    head_dim, base = rope_geometry(models["float32"].config)
    picks = candidates(args.candidates, L0, args.scale, head_dim, base, args.seed)
    windows = sample_windows(load_tokens(args.tokens), target, args.windows, seed=[args.seed, target])

    rows = []
    for i, factors in enumerate(picks):
        scaling = RopeScaling("longrope", L0, target, factors=factors)
        row = {"candidate": i}
        for name, model in models.items():  # alternating, so load on the machine falls on both alike
            apply_rope_scaling(model, scaling, verify=False)
            t0 = time.perf_counter()
            row[f"ppl_{name}"] = perplexity(model, windows).ppl
            row[f"seconds_{name}"] = time.perf_counter() - t0
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    summary = {
        "model": str(args.model), "length": target, "windows": args.windows,
        "candidates": len(rows), "threads": args.threads,
        "seconds_per_evaluation": {n: float(table[f"seconds_{n}"].mean()) for n in models},
        "speedup_bf16": float(table["seconds_float32"].mean() / table["seconds_bfloat16"].mean()),
        "spearman_bf16_vs_fp32": spearman(table["ppl_float32"], table["ppl_bfloat16"]),
        "max_relative_ppl_difference": float((table["ppl_bfloat16"] / table["ppl_float32"] - 1).abs().max()),
        "same_best_candidate": bool(table["ppl_float32"].idxmin() == table["ppl_bfloat16"].idxmin()),
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

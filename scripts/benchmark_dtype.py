"""bfloat16 against float32 for search fitness: seconds per fitness evaluation, and whether bf16 ranks a finished
search's candidates as fp32 does (Spearman rank correlation), on that search's own model and fitness windows.

    .venv/bin/python scripts/benchmark_dtype.py results/search/128k --model results/base/model \
        --out docs/smollm2/dtype.csv --candidates 12
Candidates are taken evenly across the search's fitness ranking, so the ranking task spans good and bad factors.
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
from longrope.model import apply_rope_scaling, load_model
from longrope.rope import RopeScaling


def spearman(a, b) -> float:
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage_dir", type=Path, help="results/search/<stage> of a finished plain search")
    parser.add_argument("--model", type=Path, default=Path("results/base/model"))
    parser.add_argument("--tokens", type=Path, default=Path("results/data/fitness.npy"))
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="CSV, one row per candidate; a JSON summary beside it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    found = json.loads((args.stage_dir / "factors.json").read_text())
    settings, L0, target = found["search"], found["original_length"], found["target_length"]
    records = [json.loads(line) for line in (args.stage_dir / "search_log.jsonl").read_text().splitlines()][1:]
    evaluated = sorted((e for r in records for e in r["evaluated"]), key=lambda e: e["fitness"])
    picks = [evaluated[i] for i in np.linspace(0, len(evaluated) - 1, args.candidates).round().astype(int)]
    windows = sample_windows(load_tokens(args.tokens), target, settings["samples"], seed=[settings["seed"], target])

    rows = []
    models = {name: load_model(args.model, dtype=dtype) for name, dtype in
              (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    for i, pick in enumerate(picks):
        scaling = RopeScaling("longrope", L0, target, factors=pick["factors"], n_hat=pick["n_hat"])
        row = {"candidate": i, "logged_fitness": pick["fitness"]}
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
        "model": str(args.model), "search": str(args.stage_dir), "length": target, "windows": settings["samples"],
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

"""bfloat16 against float32 for search fitness, on a finished search: does float32 rank the candidates the search
scored (in bfloat16) the same way (Spearman rank correlation), and what does one fitness evaluation cost in each.

    .venv/bin/python -m longrope.tools.benchmark_dtype results/search/128k --model results/base/model \\
        --out docs/smollm2/dtype.csv
Every candidate the search evaluated is rescored in float32 on the search's own fitness windows (both lengths of a
recovery search, their geometric mean as the search's fitness); the first is also rescored in bfloat16, which must
reproduce its logged fitness, and times both.
"""
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from longrope.factors import load_factors
from longrope.patching import apply_rope_scaling
from longrope.rope import RopeScaling
from longrope.tools.common import (finished_search, load_scoring_model, search_arguments, search_fitness,
                                   search_fitness_windows, search_settings)


def spearman(a, b) -> float:
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def candidate_scalings(found, entries: list[dict], stage_dir: Path) -> list[RopeScaling]:
    """The scaling each logged candidate was scored under, as scripts/search_factors.py builds it: the factors
    themselves (plain), λ₂ on the base stage's factors (secondary), or the short set beside the long (recovery)."""
    settings = search_settings(found)
    if settings.mode == "recovery":
        return [dataclasses.replace(found.scaling, short_factors=tuple(e["factors"])) for e in entries]
    carried = 1.0
    if settings.mode == "secondary":  # the base stage's folder sits beside this one, as the rules lay them out
        carried = np.asarray(load_factors(stage_dir.parent / settings.base_stage / "factors.json").factors)
    return [dataclasses.replace(found.scaling, factors=tuple(carried * np.asarray(e["factors"])), n_hat=e["n_hat"])
            for e in entries]


def timed_fitness(model, scaling, windows) -> tuple[float, float]:
    apply_rope_scaling(model, scaling, verify=False)
    t0 = time.perf_counter()
    return search_fitness(model, windows), time.perf_counter() - t0


def main():
    parser = search_arguments(__doc__, "results/search/<stage> of a finished search run in bf16")
    parser.add_argument("--out", type=Path, required=True, help="CSV, one row per candidate; a JSON summary beside it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    found, records = finished_search(args.stage_dir)
    # full-fidelity scores only (windows null, or absent in older logs): float32 rescores on all windows
    evaluated = [e for r in records for e in r["evaluated"] if e.get("windows") is None]
    windows = search_fitness_windows(found, args.tokens, args.tokenizer)
    scalings = candidate_scalings(found, evaluated, args.stage_dir)

    bf16_check, bf16_seconds = timed_fitness(load_scoring_model(args.model, "bfloat16"), scalings[0], windows)
    fp32 = load_scoring_model(args.model, "float32")
    rows = []
    for i, (entry, scaling) in enumerate(zip(evaluated, scalings)):
        ppl, seconds = timed_fitness(fp32, scaling, windows)
        rows.append({"candidate": i, "ppl_bfloat16": entry["fitness"], "ppl_float32": ppl, "seconds_float32": seconds})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    summary = {
        "model": str(args.model), "search": str(args.stage_dir), "length": found.target_length,
        "windows": found.fitness_samples, "candidates": len(rows), "threads": args.threads,
        "bf16_reproduces_logged_fitness": bf16_check == evaluated[0]["fitness"],
        "seconds_per_evaluation": {"bfloat16": bf16_seconds, "float32": float(table["seconds_float32"].mean())},
        "speedup_bf16": float(table["seconds_float32"].mean() / bf16_seconds),
        "spearman_bf16_vs_fp32": spearman(table["ppl_float32"], table["ppl_bfloat16"]),
        "max_relative_ppl_difference": float((table["ppl_bfloat16"] / table["ppl_float32"] - 1).abs().max()),
        "same_best_candidate": bool(table["ppl_float32"].idxmin() == table["ppl_bfloat16"].idxmin()),
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

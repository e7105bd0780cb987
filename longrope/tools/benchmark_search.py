"""Cost of a finished search stage: what it spent in all and until its best first came within 1 % of the final best
(candidates scored at any fidelity, candidates scored on all K windows, windows scored, wall seconds), absolute and as
a fraction of the run's total; the windows until then as a fraction of the paper's budget, every candidate on all K
windows (the goal for a multi-fidelity search: <= 0.35); cache hits; seconds per fitness evaluation (the search's
own windows, at every fitness length, in the dtype it ran in), and its time against a plain forward of the same
tokens (unpatched model).

    .venv/bin/python -m longrope.tools.benchmark_search results/search/128k --model results/base/model
"""
import json
import time

import torch

from longrope.model import next_token_nll
from longrope.patching import apply_rope_scaling
from longrope.tools.common import (finished_search, load_scoring_model, search_arguments, search_fitness,
                                   search_fitness_windows)


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main():
    parser = search_arguments(__doc__, "results/search/<stage>")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    found, records = finished_search(args.stage_dir)
    within = next(r for r in records if r["best"] <= 1.01 * records[-1]["best"])
    keys = ("evaluations", "full_evaluations", "window_evaluations", "seconds")
    total, to_within = ({key: r[key] for key in keys} for r in (records[-1], within))
    fraction = {key: round(to_within[key] / total[key], 3) for key in total}
    windows = search_fitness_windows(found, args.tokens, args.tokenizer)
    # the paper scores every candidate on every window of every fitness length (window_evaluations counts them all)
    paper_windows = total["evaluations"] * sum(len(batch) for batch, _ in windows)

    model = load_scoring_model(args.model, found.dtype)
    rows = [torch.as_tensor(w)[None] for batch, _ in windows for w in batch]
    with torch.no_grad():
        plain = seconds(lambda: [next_token_nll(model, row) for row in rows], args.repeats)
    apply_rope_scaling(model, found.scaling)
    fitness = seconds(lambda: search_fitness(model, windows), args.repeats)

    print(json.dumps({
        "stage": found.stage, "target_length": found.target_length, "fitness_samples": found.fitness_samples,
        "fidelity": found.search.get("fidelity", []), "generations": len(records) - 1, "total": total,
        "to_within_1pct": to_within, "fraction_to_within_1pct": fraction, "paper_budget_windows": paper_windows,
        "windows_to_within_1pct_of_paper_budget": round(to_within["window_evaluations"] / paper_windows, 3),
        "cache_hits": records[-1]["cache_hits"],
        "seconds_per_fitness_evaluation": round(fitness, 4), "seconds_plain_forward": round(plain, 4),
        "throughput_ratio_plain_over_fitness": round(plain / fitness, 3),
    }, indent=2))


if __name__ == "__main__":
    main()

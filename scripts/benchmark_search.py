"""Cost of a finished search stage: what it spent in all and until its best first came within 1 % of the final best
(candidates scored at any fidelity, candidates scored on all K windows, windows scored, wall seconds), absolute and as
a fraction of the run's total (the goal: <= 0.35); cache hits; seconds per fitness evaluation, and its time against a
plain forward of the same tokens (unpatched model).

    .venv/bin/python scripts/benchmark_search.py results/search/128k --model results/base/model
"""
import argparse
import json
import time
from pathlib import Path

import torch

from longrope.data.tokens import load_tokens
from longrope.data.windows import sample_windows
from longrope.evaluation.perplexity import perplexity
from longrope.model import load_model, next_token_nll
from longrope.patching import apply_rope_scaling
from longrope.rope import RopeScaling


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage_dir", type=Path, help="results/search/<stage>")
    parser.add_argument("--model", type=Path, default=Path("results/base/model"))
    parser.add_argument("--tokens", type=Path, default=Path("results/data/fitness.npy"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    found = json.loads((args.stage_dir / "factors.json").read_text())
    records = [json.loads(line) for line in (args.stage_dir / "search_log.jsonl").read_text().splitlines()][1:]
    within = next(r for r in records if r["best"] <= 1.01 * records[-1]["best"])
    k = found["fitness_samples"]

    def cost(record: dict) -> dict:  # windows per fitness length; a full evaluation scores all K of them
        return {"evaluations": record["evaluations"], "full_evaluations": record["full_evaluations"],
                "window_evaluations": record["window_evaluations"] + k * record["full_evaluations"],
                "seconds": record["seconds"]}

    total, to_within = cost(records[-1]), cost(within)
    fraction = {key: round(to_within[key] / total[key], 3) for key in total}  # the goal: <= 0.35

    scaling = RopeScaling.from_dict(found["scaling"])
    windows = sample_windows(load_tokens(args.tokens), scaling.target_length, found["fitness_samples"],
                             seed=[found["search"]["seed"], scaling.target_length])
    model = load_model(args.model)
    batch = torch.as_tensor(windows)
    with torch.no_grad():
        plain = seconds(lambda: [next_token_nll(model, w[None]) for w in batch], args.repeats)
    apply_rope_scaling(model, scaling)
    fitness = seconds(lambda: perplexity(model, windows), args.repeats)

    print(json.dumps({
        "stage": found["stage"], "target_length": scaling.target_length, "fitness_samples": len(windows),
        "fidelity": found["search"].get("fidelity", []), "generations": len(records) - 1, "total": total,
        "to_within_1pct": to_within, "fraction_to_within_1pct": fraction, "cache_hits": records[-1]["cache_hits"],
        "seconds_per_fitness_evaluation": round(fitness, 4), "seconds_plain_forward": round(plain, 4),
        "throughput_ratio_plain_over_fitness": round(plain / fitness, 3),
    }, indent=2))


if __name__ == "__main__":
    main()

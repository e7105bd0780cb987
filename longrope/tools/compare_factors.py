"""Searched factor sets against each other and against the baselines, paired, on one model at one length: held-out
perplexity of the same windows under each (95 % t interval), each set's ratio to the best baseline and to the first
set (seeded paired bootstrap), and passkey accuracy (Wilson interval). For comparing searches that differ in one
setting (fitness, fidelity, ...) — the issue "search beyond the paper" measurements.

    longrope-compare-factors --model results/base/model --factors ppl=a/factors.json \\
        needle=b/factors.json --tokens results/data/stores/heldout-evaluation-<digest> --tokenizer results/data/tokenizer --windows 17
"""
import argparse
import json

import torch

from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import load_tokens
from longrope.data.windows import sample_windows
from longrope.evaluation.perplexity import perplexity
from longrope.evaluation.retrieval import passkey_accuracy
from longrope.evaluation.stats import paired_bootstrap_ratio
from longrope.factors import load_factors
from longrope.patching import apply_rope_scaling
from longrope.rope import RopeScaling
from longrope.tools.common import load_scoring_model


def cell(value: float, lo: float, hi: float, digits: int = 3) -> str:
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--factors", nargs="+", required=True, help="NAME=factors.json of each search")
    parser.add_argument("--tokens", required=True, help="the evaluation token store (results/data/stores/…-evaluation-…)")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--baselines", nargs="*", default=["pi", "ntk", "dynamic_ntk", "yarn"])
    parser.add_argument("--windows", type=int, default=8, help="held-out windows of the target length")
    parser.add_argument("--seed", type=int, default=1234, help="the windows' and passkeys' seed")
    parser.add_argument("--passkey-trials", type=int, default=0, help="seeded keys at the target length, per depth")
    parser.add_argument("--depths", type=float, nargs="+", default=[0.5])
    parser.add_argument("--task-line", action="store_true", help="the Landmark prompt's task line (real models)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    searched = {name: load_factors(path) for name, path in (spec.split("=", 1) for spec in args.factors)}
    first = next(iter(searched.values()))
    L0, target = first.original_length, first.target_length
    if any((s.original_length, s.target_length) != (L0, target) for s in searched.values()):
        raise SystemExit("every factor set must extend the same L0 to the same target length")
    scalings = {**searched, **{m: RopeScaling(m, L0, target) for m in args.baselines}}
    model = load_scoring_model(args.model, args.dtype)
    tokenizer = load_tokenizer(args.tokenizer)
    windows = sample_windows(load_tokens(args.tokens), target, args.windows, seed=[args.seed, target])
    nll, rows = {}, {}
    for name, scaling in scalings.items():
        apply_rope_scaling(model, scaling)
        result = perplexity(model, windows, progress=name)
        nll[name], rows[name] = result.unit_nll, result.summary()
        if args.passkey_trials and name in searched:
            hits = passkey_accuracy(model, tokenizer, target, args.depths, args.passkey_trials, args.seed,
                                    with_task=args.task_line, progress=f"{name} passkey")
            rows[name]["passkey"] = hits
        print(json.dumps({"scaling": name, **{k: v for k, v in rows[name].items() if k != "passkey"}}), flush=True)

    best = min(args.baselines, key=lambda m: rows[m]["ppl"]) if args.baselines else None
    print(f"\n{len(windows)} held-out windows of {target} tokens (L0 = {L0}); best baseline: {best}\n")
    print("| factors | ppl [95 %] | ratio to the best baseline | ratio to the first set | passkey at target |")
    print("|---|---|---|---|---|")
    first_name = next(iter(searched))
    for name in scalings:
        r = rows[name]
        vs_best = cell(*paired_bootstrap_ratio(nll[name], nll[best], seed=args.seed)) if best else "–"
        vs_first = cell(*paired_bootstrap_ratio(nll[name], nll[first_name], seed=args.seed)) if name in searched else "–"
        keys = "; ".join(f"depth {h['depth']:g}: {cell(h['accuracy'], h['accuracy_lo'], h['accuracy_hi'], 2)}"
                         for h in r.get("passkey", []))
        print(f"| {name} | {cell(r['ppl'], r['ppl_lo'], r['ppl_hi'], 2)} | {vs_best} | {vs_first} | {keys or '–'} |")


if __name__ == "__main__":
    main()

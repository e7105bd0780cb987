"""Scoring at the speed of the model: one window's mean next-token NLL through the project's path (the RoPE patch
and the chunked `next_token_nll` the search and evaluation jobs use) against transformers' own forward with its
built-in loss (`model(input_ids, labels=input_ids).loss`, which holds the whole T×V logits), side by side.

    .venv/bin/python -m longrope.tools.benchmark_scoring --model results/base/model --lengths 4096 16384

Each (length, path) runs in a fresh process: it loads the model in the compute dtype, applies the same scaling to
both paths (YaRN at the length's scale over L0, so the patch is on the path measured), times `--repeats` calls
after one warm-up and reports the fastest, and the growth of peak memory over the loaded model (peak RSS on CPU,
torch.cuda.max_memory_allocated on a GPU). Both paths score the same seeded ids, so their NLLs must agree.
"""
import argparse
import json
import math
import subprocess
import sys
import time

import torch
from transformers import AutoConfig

from longrope.model import dtype_name, next_token_nll
from longrope.rope import RopeScaling
from longrope.tools.common import load_scoring_model, model_folder, peak_memory_bytes

PATHS = ("stock", "project")


def measure(model_dir: str, length: int, path: str, dtype: str, threads: int, repeats: int) -> dict:
    """Runs in the child process: load, note the baseline, score the window (warm-up + repeats), note the peak."""
    torch.set_num_threads(threads)
    L0 = AutoConfig.from_pretrained(model_dir, local_files_only=True).max_position_embeddings
    model = load_scoring_model(model_dir, dtype, scaling=RopeScaling("yarn", L0, max(L0, length)))
    gpu = torch.cuda.is_available()
    if gpu:
        model.cuda()
        torch.cuda.reset_peak_memory_stats()
    ids = torch.randint(0, model.config.vocab_size, (1, length + 1), device=next(model.parameters()).device,
                        generator=torch.Generator().manual_seed(length))

    def score() -> float:
        if path == "stock":
            return model(input_ids=ids, labels=ids, use_cache=False).loss.item()
        return next_token_nll(model, ids).mean().item()

    before = peak_memory_bytes()
    seconds, nll = [], None
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            nll = score()
            seconds.append(time.perf_counter() - start)
    return {"length": length, "path": path, "seconds": min(seconds[1:]), "tokens_per_s": length / min(seconds[1:]),
            "nll": nll, "peak_growth_mb": (peak_memory_bytes() - before) / 2**20, "dtype": dtype_name(model.dtype),
            "device": "cuda" if gpu else "cpu", "threads": threads, "attention": model.config._attn_implementation}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder (default: a random tiny Llama of the embedded default's shape)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="also write the rows as JSON lines here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        length, path = int(args.child[0]), args.child[1]
        print(json.dumps(measure(args.model, length, path, args.dtype, args.threads, args.repeats)))
        return
    rows = []
    with model_folder(args.model) as folder:
        for length in args.lengths:
            for path in PATHS:
                out = subprocess.run([sys.executable, "-m", "longrope.tools.benchmark_scoring", "--model", folder,
                                      "--dtype", args.dtype, "--threads", str(args.threads),
                                      "--repeats", str(args.repeats), "--child", str(length), path],
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    print("| length | stock s | project s | throughput project / stock | stock peak growth MB | project peak growth MB "
          "| NLL stock | NLL project |")
    print("|---|---|---|---|---|---|---|---|")
    for stock, project in zip(rows[::2], rows[1::2]):
        print(f"| {stock['length']} | {stock['seconds']:.2f} | {project['seconds']:.2f} | "
              f"{stock['seconds'] / project['seconds']:.3f} | {stock['peak_growth_mb']:.0f} | "
              f"{project['peak_growth_mb']:.0f} | {stock['nll']:.4f} | {project['nll']:.4f} |")
        if not math.isclose(stock["nll"], project["nll"], rel_tol=1e-2):
            raise SystemExit(f"the two paths disagree at {stock['length']}: NLL {stock['nll']} vs {project['nll']}")
    first = rows[0]
    print(f"{first['device']}, {first['dtype']}, {first['threads']} threads, attention {first['attention']}, "
          f"best of {args.repeats} after a warm-up")


if __name__ == "__main__":
    main()

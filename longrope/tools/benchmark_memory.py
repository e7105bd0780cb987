"""Peak memory of one perplexity evaluation (forward + chunked loss) at L, 2L and 4L tokens: each length runs in a
fresh process, so its peak is its own. On CPU the figure is the growth of peak RSS over the loaded model's; on a
GPU, torch.cuda.max_memory_allocated. Goal: 4× the length needs at most 4.5× the memory (no L×L matrix).

    .venv/bin/python -m longrope.tools.benchmark_memory --model results/base/model --lengths 4096 8192 16384
"""
import argparse
import json
import subprocess
import sys

import torch

from longrope.model import next_token_nll
from longrope.tools.common import load_scoring_model, peak_memory_bytes


def measure(model_dir: str, length: int) -> dict:
    """Runs in the child process: load, note the baseline, evaluate one window, note the peak."""
    model = load_scoring_model(model_dir, "float32")
    gpu = torch.cuda.is_available()
    if gpu:
        model.cuda()
        torch.cuda.reset_peak_memory_stats()
    before = peak_memory_bytes()
    ids = torch.randint(0, model.config.vocab_size, (1, length + 1), device=next(model.parameters()).device)
    with torch.no_grad():
        next_token_nll(model, ids)
    after = peak_memory_bytes()
    return {"length": length, "device": "cuda" if gpu else "cpu", "peak_mb": after / 2**20,
            "growth_mb": (after - before) / 2**20, "attention": model.config._attn_implementation}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="results/base/model")
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.child)))
        return
    rows = []
    for length in args.lengths:
        out = subprocess.run([sys.executable, "-m", "longrope.tools.benchmark_memory", "--model", args.model,
                              "--child", str(length)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| length | peak MB | growth over the loaded model, MB | growth / growth at the shortest |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['length']} | {row['peak_mb']:.0f} | {row['growth_mb']:.0f} | "
              f"{row['growth_mb'] / rows[0]['growth_mb']:.2f} |")
    print(f"device {rows[0]['device']}, attention {rows[0]['attention']}")


if __name__ == "__main__":
    main()

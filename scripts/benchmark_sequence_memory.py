"""Peak memory per rank of one scoring forward (forward + chunked loss, no gradients) with each window split over
N processes (longrope.sequence_parallel), against the planner's prediction (longrope.memory). Each (length, N) runs
in a fresh process tree. Measured: the growth of each process's peak RSS (VmHWM) over its loaded model's, on CPU,
with glibc made to return every freed block of 64 KiB or more at once (MALLOC_MMAP_THRESHOLD_), so that the peak is
that of the live tensors, as torch.cuda.max_memory_allocated on a GPU; with glibc's default, freed blocks stay in
its heap and the peak follows their fragmentation. Predicted: the planner's workspace and logits for the same job
in fp32.

    .venv/bin/python scripts/benchmark_sequence_memory.py --lengths 16384 32768 65536 --sequence 1 2
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from longrope.memory import Architecture, Job, memory
from longrope.model import TINY_LLAMA, apply_rope_scaling, load_model, next_token_nll, tiny_llama
from longrope.rope import RopeScaling
from longrope.sequence_parallel import spread


def peak_rss(pid: int | str = "self") -> int:
    """VmHWM: the process's peak resident set so far, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc")


def measure(folder: str, length: int, sequence: int) -> dict:
    """In the child: load, split over `sequence` processes, note every rank's peak, score one window, note again."""
    torch.set_num_threads(1)
    model = load_model(folder, attention="sdpa")
    apply_rope_scaling(model, RopeScaling("yarn", 128, length), verify=False)
    pids = ["self"]
    if sequence > 1:
        spread(model, folder, sequence, threads=1)
        pids += [f.pid for f in model.sequence_parallel.followers]
    before = [peak_rss(pid) for pid in pids]
    ids = torch.randint(0, model.config.vocab_size, (1, length + 1), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        next_token_nll(model, ids)
    after = [peak_rss(pid) for pid in pids]
    if sequence > 1:
        model.sequence_parallel.close()
    return {"length": length, "sequence": sequence, "growth_mb": [(a - b) / 2**20 for a, b in zip(after, before)]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16384, 32768, 65536])
    parser.add_argument("--sequence", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    with tempfile.TemporaryDirectory() as folder:
        tiny_llama(**TINY_LLAMA).save_pretrained(folder)
        architecture = Architecture.from_config(json.loads(Path(folder, "config.json").read_text()))
        print("| tokens | N | measured growth of peak RSS per rank, MB | predicted, MB | measured / predicted |")
        print("|---|---|---|---|---|")
        measured = {}
        for length in args.lengths:
            for n in args.sequence:
                out = subprocess.run([sys.executable, __file__, "--child", folder, str(length), str(n)],
                                     capture_output=True, text=True, check=True,
                                     env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
                row = json.loads(out.stdout.strip().splitlines()[-1])
                plan = memory(architecture, Job("score", length, n, value_bytes=4))
                predicted = (max(plan["attention"], plan["mlp"]) + plan["logits"]) / 2**20
                worst = max(row["growth_mb"])
                measured[length, n] = worst
                print(f"| {length} | {n} | {', '.join(f'{g:.0f}' for g in row['growth_mb'])} | {predicted:.0f} | "
                      f"{worst / predicted:.2f} |", flush=True)
        for length in args.lengths:
            if (length, 1) in measured and (length, 2) in measured:
                print(f"{length} tokens: N = 2 / N = 1 (largest rank) = "
                      f"{measured[length, 2] / measured[length, 1]:.2f}")


if __name__ == "__main__":
    main()

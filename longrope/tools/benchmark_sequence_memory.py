"""Peak memory per rank of one window split over N processes (longrope.parallelism.sequence), against the planner's
prediction (longrope.parallelism.memory), on the embedded default's tiny model in fp32.

* score: a forward with the chunked loss, no gradients (search fitness, perplexity); a leader and N - 1 followers;
* train: a forward and backward of one row (a fine-tune's micro-step), N ranks of a torchrun job sharing the row,
  with the MLP whole or on tiles of --tile tokens (longrope.patching); the loss is always tiled.

Each (mode, length, N, tile) runs in a fresh process tree. Measured: the growth of each process's peak RSS (VmHWM) over
its loaded model's, with glibc made to return every freed block of 64 KiB or more at once (MALLOC_MMAP_THRESHOLD_), so
that the peak is that of the live tensors, as torch.cuda.max_memory_allocated on a GPU; with glibc's default, freed
blocks stay in its heap and the peak follows their fragmentation. Predicted: the planner's parts that grow with the
tokens (activations, the larger workspace, logits) plus, when training, the weights' gradients.

    .venv/bin/python -m longrope.tools.benchmark_sequence_memory --modes score train --lengths 16384 32768 \\
        --sequence 1 2
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from longrope.model import TINY_LLAMA, next_token_nll
from longrope.parallelism.memory import Architecture, Job, memory
from longrope.parallelism.sequence import spread, split_sequences
from longrope.patching import apply_rope_scaling, tile_mlp
from longrope.rope import RopeScaling
from longrope.tools.common import load_scoring_model, model_folder


def peak_rss(pid: int | str = "self") -> int:
    """VmHWM: the process's peak resident set so far, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc")


def loaded(folder: str, length: int, tile: int):
    torch.set_num_threads(1)
    model = load_scoring_model(folder, "float32", "sdpa")
    apply_rope_scaling(model, RopeScaling("yarn", TINY_LLAMA["original_length"], length), verify=False)
    if tile:
        tile_mlp(model, tile)
    ids = torch.randint(0, model.config.vocab_size, (1, length + 1), generator=torch.Generator().manual_seed(0))
    return model, ids


def score(folder: str, length: int, sequence: int, tile: int) -> list[float]:
    """The leader: split over `sequence` processes, note every rank's peak, score one window, note again."""
    model, ids = loaded(folder, length, tile)
    pids = ["self"]
    if sequence > 1:
        spread(model, folder, sequence, threads=1)
        pids += [f.pid for f in model.sequence_parallel.followers]
    before = [peak_rss(pid) for pid in pids]
    with torch.no_grad():
        next_token_nll(model, ids)
    after = [peak_rss(pid) for pid in pids]
    if sequence > 1:
        model.sequence_parallel.close()
    return [(a - b) / 2**20 for a, b in zip(after, before)]


def train(folder: str, length: int, sequence: int, tile: int) -> list[float] | None:
    """A rank of the torchrun job: its growth over one forward and backward; rank 0 gathers every rank's."""
    import torch.distributed as dist

    from longrope.training.deepspeed_backend import init_process_group

    init_process_group()
    model, ids = loaded(folder, length, tile)
    split_sequences(model, sequence)
    before = peak_rss()
    next_token_nll(model, ids).mean().backward()
    growth = [None] * dist.get_world_size()
    dist.all_gather_object(growth, (peak_rss() - before) / 2**20)
    return growth if dist.get_rank() == 0 else None


def run(mode: str, folder: str, length: int, sequence: int, tile: int) -> list[float]:
    child = ["-m", "longrope.tools.benchmark_sequence_memory", "--child", mode, folder, str(length), str(sequence),
             str(tile)]
    launcher = [sys.executable] if mode == "score" else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(sequence)]
    out = subprocess.run(launcher + child, capture_output=True, text=True,
                         env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("[")][-1])


def predicted(architecture: Architecture, mode: str, length: int, sequence: int, tile: int) -> float:
    plan = memory(architecture, Job(mode, length, sequence, value_bytes=4, tile_mlp=tile or None))
    return (plan["activations"] + max(plan["attention"], plan["mlp"]) + plan["logits"]
            + (architecture.parameters * 4 if mode == "train" else 0)) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", choices=["score", "train"], default=["score", "train"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16384, 32768, 65536])
    parser.add_argument("--sequence", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tile", type=int, nargs="+", default=[0, 1024], help="MLP tile when training; 0 = whole")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, folder, *numbers = args.child
        growth = (score if mode == "score" else train)(folder, *map(int, numbers))
        if growth is not None:
            print(json.dumps(growth), flush=True)
        return
    with model_folder() as folder:
        architecture = Architecture.from_config(json.loads(Path(folder, "config.json").read_text()))
        print("| mode | MLP tile | tokens | N | measured growth of peak RSS per rank, MB | predicted, MB "
              "| measured / predicted | N / N=1 (largest rank) |")
        print("|---|---|---|---|---|---|---|---|")
        for mode in args.modes:
            for tile in args.tile if mode == "train" else [0]:
                for length in args.lengths:
                    one = None
                    for n in args.sequence:
                        growth = run(mode, folder, length, n, tile)
                        worst, plan = max(growth), predicted(architecture, mode, length, n, tile)
                        one = worst if n == 1 else one
                        ratio = f"{worst / one:.2f}" if one else "–"
                        print(f"| {mode} | {tile or '–'} | {length} | {n} | {', '.join(f'{g:.0f}' for g in growth)} "
                              f"| {plan:.0f} | {worst / plan:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()

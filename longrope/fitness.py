"""Search fitness: the perplexity of a model under candidate RoPE scalings on fixed windows, on one model replica or
spread over several.

Several replicas are worker processes (`python -m longrope.fitness`), as the official search runs one evaluator
process per device group; each generation's candidates are split over them. With `sequence` N > 1 a replica spans
N processes: it leads N - 1 followers that each hold a shard of every window (longrope.sequence_parallel). A candidate's fitness does not depend
on the worker that scores it: every replica loads the same weights in the same dtype, scores the same windows with
the same number of threads, and a forward pass has no state that carries over from one candidate to the next.
Workers are separate interpreters rather than multiprocessing children because a Snakemake `script:` is the main
module, and multiprocessing's spawn would run it again in every child.
"""
from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import traceback
from dataclasses import dataclass

import numpy as np
import torch

from .evaluate import perplexity
from .model import apply_rope_scaling, load_model
from .rope import RopeScaling
from .sequence_parallel import spread


@dataclass(frozen=True)
class FitnessSpec:
    model: str                      # model folder
    attention: str
    probe: RopeScaling              # a scaling the replica is patched with and verified on, once
    windows: tuple[np.ndarray, ...]  # one (K, length) array per fitness length
    dtype: torch.dtype = torch.float32


class Replica:
    """One copy of the model whose rotary module is swapped per candidate (the patch is verified once, on load),
    on GPUs index·sequence … index·sequence + sequence - 1 when there are GPUs."""

    def __init__(self, spec: FitnessSpec, index: int, threads: int, sequence: int = 1):
        torch.set_num_threads(threads)
        gpu = f"cuda:{index * sequence % max(1, torch.cuda.device_count())}"
        self.model = load_model(spec.model, attention=spec.attention, dtype=spec.dtype)
        self.model.to(gpu if torch.cuda.is_available() else "cpu")
        self.rotary = apply_rope_scaling(self.model, spec.probe).model.rotary_emb
        if sequence > 1:
            spread(self.model, spec.model, sequence, threads)
        self.windows = spec.windows

    def __call__(self, scaling: RopeScaling) -> float:
        """Perplexity at the fitness length; the geometric mean over lengths when there are several (recovery)."""
        self.rotary.scaling = scaling
        return math.exp(np.mean([math.log(perplexity(self.model, w).ppl) for w in self.windows]))

    def close(self) -> None:
        split = getattr(self.model, "sequence_parallel", None)
        if split is not None:
            split.close()


class FitnessPool:
    """Scores lists of scalings on `workers` replicas of `sequence` processes each, with threads // (workers ·
    sequence) threads a process (at least one).

    One worker scores in this process; several are subprocesses, worker i taking candidates i, i + workers, … of
    every list. A worker that fails raises here with its traceback. Against one worker with `threads` threads, a CPU
    kernel that splits a reduction by thread count could round differently; tests/test_fitness.py finds the
    searches identical.
    """

    def __init__(self, spec: FitnessSpec, workers: int = 1, threads: int = 1, sequence: int = 1):
        per_process = max(1, threads // (workers * sequence))
        self._local = Replica(spec, 0, per_process, sequence) if workers == 1 else None
        self._workers = [] if workers == 1 else [
            subprocess.Popen([sys.executable, "-m", "longrope.fitness", str(i), str(per_process), str(sequence)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=_file_or_none(sys.stderr))
            for i in range(workers)
        ]
        for worker in self._workers:
            self._send(worker, spec)
        try:  # every replica loaded and verified before the search starts
            for i, worker in enumerate(self._workers):
                self._receive(i, worker)
        except RuntimeError:
            self.close()
            raise

    def __call__(self, scalings: list[RopeScaling]) -> list[float]:
        if self._local is not None:
            return [self._local(s) for s in scalings]
        n = len(self._workers)
        for i, worker in enumerate(self._workers):
            self._send(worker, scalings[i::n])
        scores = [self._receive(i, worker) for i, worker in enumerate(self._workers)]
        return [scores[j % n][j // n] for j in range(len(scalings))]

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        for worker in self._workers:
            worker.stdin.close()
            worker.wait()
        self._workers = []

    def __enter__(self) -> "FitnessPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _send(worker, payload) -> None:
        pickle.dump(payload, worker.stdin)
        worker.stdin.flush()

    @staticmethod
    def _receive(index: int, worker):
        try:
            status, payload = pickle.load(worker.stdout)
        except EOFError:
            raise RuntimeError(f"fitness worker {index} exited with code {worker.wait()}") from None
        if status == "error":
            raise RuntimeError(f"fitness worker {index} failed:\n{payload}")
        return payload


def _file_or_none(stream):
    """`stream` when it is a real file (a script's log), so the workers' messages land there too; else inherit."""
    try:
        stream.fileno()
        return stream
    except (AttributeError, OSError, ValueError):
        return None


def _serve(index: int, threads: int, sequence: int) -> None:
    """Worker loop: a FitnessSpec, then lists of scalings on stdin; ('ok' | 'error', payload) on stdout."""
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed while loading or scoring goes to stderr, never into the result stream
    tasks = sys.stdin.buffer

    def reply(status, payload):
        pickle.dump((status, payload), results)
        results.flush()

    try:
        replica = Replica(pickle.load(tasks), index, threads, sequence)
        reply("ok", None)
        while True:
            try:
                scalings = pickle.load(tasks)
            except EOFError:
                replica.close()
                return
            reply("ok", [replica(s) for s in scalings])
    except Exception:
        reply("error", traceback.format_exc())


if __name__ == "__main__":
    _serve(*map(int, sys.argv[1:4]))

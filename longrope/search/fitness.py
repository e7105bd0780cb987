"""Search fitness: the perplexity of a model under candidate RoPE scalings on fixed windows — over every token, or
over the tokens a mask marks (needle-driven fitness, data.windows.needle_windows) — on one model replica or spread over
several.

Several replicas are worker processes (`python -m longrope.search.fitness`), as the official search runs one evaluator
process per device group; each generation's candidates are split over them. With `sequence` N > 1 a replica spans
N processes: it leads N - 1 followers that each hold a shard of every window (longrope.parallelism.sequence). With
`batch` B > 1 a replica scores up to B candidates in one forward: B copies of a window, row b under candidate b's
scaling (ScaledRotaryEmbedding with one scaling per row; the leader hands the followers the same rows). Rows never
mix, so the scores are the one-by-one scores up to the rounding of kernels that block by batch size (identical in
our CPU runs; the tests allow 1e-5). A candidate's fitness does not depend on the worker that scores it: every
replica loads the same weights in the same dtype, scores the same windows with the same number of threads and
batch, and a forward pass has no state that carries over from one candidate to the next.
Workers are separate interpreters rather than multiprocessing children because a Snakemake `script:` is the main
module, and multiprocessing's spawn would run it again in every child.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import traceback
from dataclasses import dataclass

import numpy as np
import torch

from longrope.evaluation.perplexity import check_scored, window_nll
from longrope.model import load_model, next_token_nll
from longrope.parallelism.sequence import spread
from longrope.patching import sequence_split, switch_scaling
from longrope.rope import RopeScaling
from longrope.search.engine import WindowScores


@dataclass(frozen=True)
class FitnessSpec:
    model: str                      # model folder
    attention: str
    probe: RopeScaling              # a scaling the replica is patched with and verified on, once
    windows: tuple[np.ndarray, ...]  # one (K, length) array per fitness length
    dtype: torch.dtype = torch.float32
    # Per windows array, the tokens whose NLL counts (bool, its shape; data.windows.needle_windows) or None for all;
    # None here: all tokens everywhere.
    scored: tuple[np.ndarray | None, ...] | None = None

    def __post_init__(self):
        if self.scored is not None:
            if len(self.scored) != len(self.windows):
                raise ValueError(f"scored has {len(self.scored)} entries for {len(self.windows)} windows arrays")
            for windows, scored in zip(self.windows, self.scored):
                check_scored(windows, scored)


class Replica:
    """One copy of the model whose rotary module is swapped per candidate (the patch is verified once, on load),
    on GPUs index·sequence … index·sequence + sequence - 1 when there are GPUs; it scores `batch` candidates a
    forward."""

    def __init__(self, spec: FitnessSpec, index: int, threads: int, sequence: int = 1, batch: int = 1):
        if batch < 1:
            raise ValueError(f"fitness batch must be at least 1, got {batch}")
        torch.set_num_threads(threads)
        gpu = f"cuda:{index * sequence % max(1, torch.cuda.device_count())}"
        # The probe scaling (PI at the target) proves the patch reaches the forward; candidates then switch it.
        self.model = load_model(spec.model, attention=spec.attention, dtype=spec.dtype, scaling=spec.probe)
        self.model.to(gpu if torch.cuda.is_available() else "cpu")
        if sequence > 1:
            spread(self.model, spec.model, sequence, threads)
        self.windows, self.batch = spec.windows, batch
        self.scored = spec.scored or (None,) * len(spec.windows)
        self.device = next(self.model.parameters()).device

    @torch.no_grad()
    def __call__(self, scalings: list[RopeScaling], windows: slice = slice(None)) -> list[WindowScores]:
        """Each scaling's mean NLL over the scored tokens of each window in `windows` (indices) of each fitness
        length; its fitness (WindowScores.fitness) is the perplexity as evaluation.perplexity.perplexity, the
        geometric mean over lengths when there are several (recovery)."""
        unit_nll = [np.zeros((len(scalings), len(kept[windows]))) for kept in self.windows]
        for i, (kept, masks) in enumerate(zip(self.windows, self.scored)):
            kept = kept[windows]
            masks = [None] * len(kept) if masks is None else masks[windows]
            for k, (window, mask) in enumerate(zip(kept, masks)):
                ids = torch.as_tensor(window, device=self.device)
                for first in range(0, len(scalings), self.batch):
                    chunk = tuple(scalings[first : first + self.batch])
                    switch_scaling(self.model, chunk)  # row b of the forward under scaling b
                    nll = next_token_nll(self.model, ids.repeat(len(chunk), 1))
                    unit_nll[i][first : first + len(chunk), k] = window_nll(nll, mask).cpu().numpy()
        return [WindowScores(tuple(per_length[j] for per_length in unit_nll)) for j in range(len(scalings))]

    def close(self) -> None:
        split = sequence_split(self.model)
        if split is not None:
            split.close()


class FitnessPool:
    """Scores lists of scalings on `workers` replicas of `sequence` processes each, with threads // (workers ·
    sequence) threads a process (at least one), `batch` candidates a forward.

    One worker scores in this process; several are subprocesses, worker i taking candidates i, i + workers, … of
    every list. A worker that fails raises here with its traceback. Against one worker with `threads` threads, a CPU
    kernel that splits a reduction by thread count could round differently; tests/test_fitness.py finds the
    searches identical.
    """

    def __init__(self, spec: FitnessSpec, workers: int = 1, threads: int = 1, sequence: int = 1, batch: int = 1):
        per_process = max(1, threads // (workers * sequence))
        self._local = Replica(spec, 0, per_process, sequence, batch) if workers == 1 else None
        self._workers = [] if workers == 1 else [
            subprocess.Popen([sys.executable, "-m", "longrope.search.fitness", str(i), str(per_process), str(sequence),
                              str(batch)],
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

    def __call__(self, scalings: list[RopeScaling], windows: slice = slice(None)) -> list[WindowScores]:
        """Replica.__call__ over the workers: each scaling's WindowScores on the windows `windows` of each length."""
        if self._local is not None:
            return self._local(scalings, windows)
        n = len(self._workers)
        for i, worker in enumerate(self._workers):
            self._send(worker, (scalings[i::n], windows))
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


def _serve(index: int, threads: int, sequence: int, batch: int) -> None:
    """Worker loop: a FitnessSpec, then (scalings, windows) on stdin; ('ok' | 'error', payload) on stdout."""
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed while loading or scoring goes to stderr, never into the result stream
    tasks = sys.stdin.buffer

    def reply(status, payload):
        pickle.dump((status, payload), results)
        results.flush()

    try:
        replica = Replica(pickle.load(tasks), index, threads, sequence, batch)
        reply("ok", None)
        while True:
            try:
                scalings, windows = pickle.load(tasks)
            except EOFError:
                replica.close()
                return
            reply("ok", replica(scalings, windows))
    except Exception:
        reply("error", traceback.format_exc())


if __name__ == "__main__":
    _serve(*map(int, sys.argv[1:5]))

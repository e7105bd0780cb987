"""What the tools share: loading a model for scoring, a finished search (its factors.json and generation records),
the exact fitness windows it scored on and the fitness it logged, and the tiny model benchmarks run on by default.
Everything goes through the library's owners, so a tool rescoring a search sees what the search saw."""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch

from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import TokenStore
from longrope.evaluation.perplexity import perplexity
from longrope.factors import FoundFactors
from longrope.model import TINY_LLAMA, compute_dtype, load_model, tiny_llama
from longrope.plan import SearchSettings
from longrope.rope import RopeScaling
from longrope.search.engine import WindowScores, generation_records
from longrope.search.windows import fitness_lengths, fitness_windows

FitnessWindows = list[tuple[np.ndarray, np.ndarray | None]]  # per fitness length: (windows, scored tokens or None)


def load_scoring_model(folder, dtype: str = "auto", attention: str = "auto", scaling: RopeScaling | None = None):
    """A model as the scoring jobs load it, its dtype ('auto', 'float32', 'bfloat16') resolved on this machine."""
    return load_model(folder, attention=attention, dtype=compute_dtype(dtype), scaling=scaling)


def peak_memory_bytes() -> int:
    """The peak so far of this process: torch.cuda.max_memory_allocated on a GPU, else peak RSS (Linux: KiB)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def model_folder(folder: str | None = None):
    """`folder`, or a temporary one holding a random tiny Llama of the embedded default's shape: benchmarks measure
    its shape, not its training."""
    if folder:
        yield folder
        return
    with tempfile.TemporaryDirectory() as tiny:
        tiny_llama(**TINY_LLAMA).save_pretrained(tiny)
        yield tiny


def search_arguments(doc: str, stage_help: str) -> argparse.ArgumentParser:
    """The command line of a tool that reads a finished search: its folder, the model, the fitness half, the
    tokenizer (needle_ppl windows need it) and the threads."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage_dir", type=Path, help=stage_help)
    parser.add_argument("--model", type=Path, default=Path("results/base/model"))
    parser.add_argument("--tokens", type=Path, help="the fitness token store (default: the one factors.json names)")
    parser.add_argument("--tokenizer", type=Path, default=Path("results/data/tokenizer"), help="for needle_ppl")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def finished_search(stage_dir: str | Path) -> tuple[FoundFactors, list[dict]]:
    """A finished search stage (results/search/<stage>): its factors and the generation records of its log."""
    return FoundFactors.load(Path(stage_dir) / "factors.json"), generation_records(Path(stage_dir) / "search_log.jsonl")


def search_settings(found: FoundFactors) -> SearchSettings:
    """The run's settings; factors.json adds the resolved ceiling_value to them."""
    return SearchSettings.from_dict({k: v for k, v in found.search.items() if k != "ceiling_value"})


def search_fitness_windows(found: FoundFactors, tokens_path, tokenizer_path) -> FitnessWindows:
    """(windows, scored tokens or None for all) at each fitness length of a finished search, rebuilt as the search
    built them from the fitness store (`tokens_path`, else the search's own): one length, or L0 and the stage's for a
    recovery."""
    settings, L0 = search_settings(found), found.original_length
    store = TokenStore.open(tokens_path or found.tokens)
    tokenizer = load_tokenizer(tokenizer_path) if settings.fitness == "needle_ppl" else None  # only needles use it
    note = partial(print, file=sys.stderr)  # stdout carries the tool's results
    return [fitness_windows(store, tokenizer, n, settings, L0, log=note)
            for n in fitness_lengths(settings.mode, L0, found.target_length)]


def search_fitness(model, windows: FitnessWindows) -> float:
    """The fitness a search logs for the model's current scaling, from its NLL on each window of each fitness length
    through the search's own WindowScores.fitness, so that a rescore can equal the logged value exactly."""
    return WindowScores(tuple(perplexity(model, w, scored).unit_nll for w, scored in windows)).fitness

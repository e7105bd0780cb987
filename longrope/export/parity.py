"""Cross-engine parity: the exported model's perplexity and next-token choices through stock transformers (the
reference), this package's own loader (longrope.model.load_model, n̂ included), llama.cpp (llama-cpp-python
running the GGUF of longrope.export.gguf) and, on a CUDA machine, vLLM, on the same held-out windows.

Each engine picks its factor set its own way (docs/engines.md): transformers and
this package per sequence length, llama.cpp once per context from n_ctx rounded up to a multiple of 256, vLLM once
at start-up. Each length gets a llama.cpp context of exactly that length, as a user serving windows of that length
would open it; vLLM runs as a server does by default (max_model_len = the extended length, so the long set). The
table shows what each engine gives, switch included.

May import: longrope.model, longrope.data.windows, longrope.evaluation.stats.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from longrope.data.windows import sample_windows
from longrope.evaluation.stats import paired_bootstrap_ratio
from longrope.model import load_model

KV_CACHE_TYPES = {"f32": 0, "f16": 1}  # ggml type ids, as llama-cpp-python's type_k / type_v take them
PACKAGE = "longrope"  # the engine name of this package's loader in the rows


def parity_windows(tokens: np.ndarray, lengths, count: int, seed: int) -> dict[int, np.ndarray]:
    """`count` windows per length, drawn from held-out tokens by (seed, length): each length on windows of its own
    (not the evaluation's nested ones), since every engine runs every window whole."""
    return {n: sample_windows(tokens, n, count, seed=[seed, n]) for n in lengths}


@dataclass
class Scored:
    """One window through one engine: each position's next-token NLL and most likely next token, and the (T, V)
    logits where the engine gives them (vLLM returns log-probabilities of the prompt's and the top tokens only)."""

    nll: np.ndarray
    top1: np.ndarray
    logits: np.ndarray | None = None


ROWS = 1024  # positions at a time: a real vocabulary's (T, V) logits are GBs at 16k, so no whole-size temporaries


def scored_logits(logits: np.ndarray, ids: np.ndarray) -> Scored:
    """A window scored from an engine's (T, V) float logits."""
    nll, top1 = [], []
    for start in range(0, len(ids) - 1, ROWS):
        rows = torch.from_numpy(np.ascontiguousarray(logits[start:min(start + ROWS, len(ids) - 1)], dtype=np.float32))
        targets = torch.from_numpy(ids[start + 1:start + 1 + len(rows)])
        nll.append(torch.nn.functional.cross_entropy(rows, targets, reduction="none").numpy())
        top1.append(rows.argmax(-1).numpy())
    return Scored(np.concatenate(nll), np.concatenate(top1), logits)


def max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return max(float(np.abs(a[i:i + ROWS] - b[i:i + ROWS]).max()) for i in range(0, len(a), ROWS))


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _forward(model):
    model.to(_device())

    @torch.no_grad()
    def score(ids: np.ndarray) -> Scored:
        logits = model(torch.from_numpy(ids)[None].to(_device())).logits[0]
        return scored_logits(logits.float().cpu().numpy(), ids)
    return score


def transformers_engine(folder: str | Path):
    """A function window → Scored through stock transformers on the exported folder (no package code), float32."""
    from transformers import AutoModelForCausalLM

    return _forward(AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval())


def package_engine(folder: str | Path):
    """The same through this package's loader: the exact scaling saved with the export (longrope_scaling.json)."""
    return _forward(load_model(folder))


def llama_cpp_engine(gguf_path: str | Path, length: int, kv_cache: str = "f16", threads: int = 1):
    """A function window → Scored through llama.cpp, in a context of `length` tokens with every position's logits
    kept; the KV cache in `kv_cache` (llama.cpp's default is f16). One batch of the whole window, computed in
    llama.cpp's default micro-batches of 512 (a micro-batch of the whole window would hold a length² attention
    matrix per head). The logits are llama.cpp's own buffer, valid until the next window."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise ImportError("running the GGUF needs llama-cpp-python: pip install -e '.[llama]' (it builds from "
                          "source; .ci/run's CMAKE_ARGS keep the build short)") from None
    if kv_cache not in KV_CACHE_TYPES:
        raise ValueError(f"kv_cache must be one of {', '.join(KV_CACHE_TYPES)}, got {kv_cache!r}")
    kv = KV_CACHE_TYPES[kv_cache]
    llm = Llama(str(gguf_path), n_ctx=length, n_batch=length, logits_all=True, type_k=kv, type_v=kv,
                n_threads=threads, verbose=False)

    def score(ids: np.ndarray) -> Scored:
        llm.reset()  # eval then drops the previous window's cache entries
        llm.eval(ids.tolist())
        return scored_logits(llm.scores[: len(ids)], ids)
    return score


def vllm_engine(folder: str | Path, gpu_memory_utilization: float = 0.5):
    """A function window → Scored through vLLM on the exported folder, float32, started as a server is by default
    (max_model_len = the extended length: every request gets the long set); half the GPU's memory, so that the
    reference models fit beside it. Needs vLLM on a CUDA machine."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise ImportError("scoring through vLLM needs vLLM, on a machine with a CUDA GPU (pip install vllm)") from None
    llm = LLM(model=str(folder), dtype="float32", enforce_eager=True, seed=0,
              gpu_memory_utilization=gpu_memory_utilization)
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)

    def score(ids: np.ndarray) -> Scored:
        (output,) = llm.generate([{"prompt_token_ids": ids.tolist()}], params, use_tqdm=False)
        return scored_prompt_logprobs(output.prompt_logprobs, ids)
    return score


def scored_prompt_logprobs(prompt_logprobs, ids: np.ndarray) -> Scored:
    """A window scored from vLLM's prompt log-probabilities: entry t (None at t = 0) maps token ids to Logprob
    (logprob, rank) given the tokens before t, for the prompt's token and the top one (rank 1)."""
    entries = prompt_logprobs[1:len(ids)]
    nll = np.array([-entry[int(token)].logprob for entry, token in zip(entries, ids[1:])])
    top1 = np.array([next(token for token, logprob in entry.items() if logprob.rank == 1) for entry in entries])
    return Scored(nll, top1)


def engine_parity(folder: str | Path, gguf_path: str | Path | None, windows: dict[int, np.ndarray],
                  kv_caches: tuple[str, ...] = ("f16",), threads: int = 1, vllm: bool = False) -> list[dict]:
    """One row per (engine, length) against stock transformers on the same (n, length) windows: both perplexities,
    the engine's relative difference with its paired 95 % interval over windows, the share of positions where both
    predict the same next token, and the largest |Δ logit| (NaN for vLLM, which gives no logits). Engines: this
    package's loader; llama.cpp with each KV cache type when a GGUF is given; vLLM when asked. Transformers scores
    each window once for all of them."""
    reference = transformers_engine(folder)
    shared = {PACKAGE: package_engine(folder)}
    if vllm:
        shared["vLLM"] = vllm_engine(folder)
    rows = []
    for length, batch in sorted(windows.items()):
        engines = dict(shared)
        if gguf_path is not None:
            engines.update({f"llama.cpp {kv} KV": llama_cpp_engine(gguf_path, length, kv, threads)
                            for kv in kv_caches})
        truth = {"nll": [], "top1": []}
        scores = {name: {"nll": [], "top1": [], "max_diff": 0.0} for name in engines}
        for ids in batch:
            expected = reference(ids)
            truth["nll"].append(expected.nll.mean())
            truth["top1"].append(expected.top1)
            for name, engine in engines.items():
                scored = engine(ids)
                scores[name]["nll"].append(scored.nll.mean())
                scores[name]["top1"].append(scored.top1)
                scores[name]["max_diff"] = (np.nan if scored.logits is None else max(
                    scores[name]["max_diff"], max_abs_difference(scored.logits, expected.logits)))
        for name, scored in scores.items():
            ratio, lo, hi = paired_bootstrap_ratio(scored["nll"], truth["nll"])
            rows.append({"engine": name, "length": length, "windows": len(batch),
                         "ppl_transformers": float(np.exp(np.mean(truth["nll"]))),
                         "ppl": float(np.exp(np.mean(scored["nll"]))),
                         "ppl_rel_diff": ratio - 1, "ppl_rel_diff_lo": lo - 1, "ppl_rel_diff_hi": hi - 1,
                         "top1_agreement": float((np.concatenate(truth["top1"])
                                                  == np.concatenate(scored["top1"])).mean()),
                         "max_abs_logit_diff": scored["max_diff"]})
    return rows


def check_parity(rows: list[dict], tolerance: float) -> None:
    """Fail a comparison that compared nothing, or in which an engine's perplexity is off by more than `tolerance`
    (a share) at some length: the export then does not give one model in every engine."""
    if not rows or any(row["windows"] == 0 for row in rows):
        raise ValueError("engine parity compared no window: export.parity needs lengths the held-out text can fill")
    off = [f"{row['engine']} at {row['length']} ({row['ppl_rel_diff']:+.4%})" for row in rows
           if not abs(row["ppl_rel_diff"]) <= tolerance]
    if off:
        raise ValueError(f"the exported model's perplexity differs from stock transformers' by more than "
                         f"export.parity.tolerance ({tolerance:.2%}): {', '.join(off)}")


def parity_table(rows: list[dict]) -> pd.DataFrame:
    """The rows for reading: one line per engine and length, the relative difference in percent with its interval."""
    table = pd.DataFrame(rows).set_index(["engine", "length"]).sort_index()
    percent = (table[["ppl_rel_diff", "ppl_rel_diff_lo", "ppl_rel_diff_hi"]] * 100).map(lambda v: f"{v:+.4f}")
    table["Δ ppl % [95 % CI]"] = percent["ppl_rel_diff"] + " [" + percent["ppl_rel_diff_lo"] + ", " \
        + percent["ppl_rel_diff_hi"] + "]"
    table["top-1 agreement %"] = table["top1_agreement"] * 100
    return table[["windows", "ppl_transformers", "ppl", "Δ ppl % [95 % CI]", "top-1 agreement %",
                  "max_abs_logit_diff"]]

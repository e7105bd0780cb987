"""Cross-engine parity: the exported model's perplexity and next-token choices through stock transformers and
through llama.cpp (llama-cpp-python running the GGUF of longrope.export.gguf), on the same held-out windows.

Each engine picks its factor set its own way (README, "The extended model in other engines"): transformers per
sequence length, llama.cpp once per context from n_ctx rounded up to a multiple of 256. Each length gets a context
of exactly that length, as a user serving windows of that length would open it, so the table shows what each
engine gives, switch included.

May import: longrope.rope, longrope.model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

KV_CACHE_TYPES = {"f32": 0, "f16": 1}  # ggml type ids, as llama-cpp-python's type_k / type_v take them


def _nll_and_top1(logits: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position NLL of the next token and the argmax prediction, from (T, V) float logits."""
    logits = torch.from_numpy(np.ascontiguousarray(logits[:-1], dtype=np.float32))
    nll = torch.nn.functional.cross_entropy(logits, torch.from_numpy(ids[1:]), reduction="none")
    return nll.numpy(), logits.argmax(-1).numpy()


def transformers_logits(folder: str | Path):
    """A function window → (T, V) float32 logits from stock transformers on the exported folder (no package code)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()

    @torch.no_grad()
    def logits(ids: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(ids)[None]).logits[0].numpy()
    return logits


def llama_cpp_logits(gguf_path: str | Path, length: int, kv_cache: str = "f16", threads: int = 1):
    """A function window → (T, V) logits from llama.cpp, in a context of `length` tokens with every position's
    logits kept; the KV cache in `kv_cache` (llama.cpp's default is f16)."""
    from llama_cpp import Llama

    if kv_cache not in KV_CACHE_TYPES:
        raise ValueError(f"kv_cache must be one of {', '.join(KV_CACHE_TYPES)}, got {kv_cache!r}")
    kv = KV_CACHE_TYPES[kv_cache]
    llm = Llama(str(gguf_path), n_ctx=length, n_batch=length, n_ubatch=length, logits_all=True, type_k=kv,
                type_v=kv, n_threads=threads, verbose=False)

    def logits(ids: np.ndarray) -> np.ndarray:
        llm.reset()  # eval then drops the previous window's cache entries
        llm.eval(ids.tolist())
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    return logits


def engine_parity(folder: str | Path, gguf_path: str | Path, windows: dict[int, np.ndarray], kv_cache: str = "f16",
                  threads: int = 1) -> list[dict]:
    """One row per length: both engines' perplexity over the same (n, length) windows, the relative difference,
    the share of positions where both predict the same next token, and the largest |Δ logit|."""
    reference = transformers_logits(folder)
    rows = []
    for length, batch in sorted(windows.items()):
        engine = llama_cpp_logits(gguf_path, length, kv_cache, threads)
        nll = {"transformers": [], "llama_cpp": []}
        same, max_diff = [], 0.0
        for ids in batch:
            ours, theirs = reference(ids), engine(ids)
            max_diff = max(max_diff, float(np.abs(ours - theirs).max()))
            (nll_ours, top1_ours), (nll_theirs, top1_theirs) = _nll_and_top1(ours, ids), _nll_and_top1(theirs, ids)
            nll["transformers"].append(nll_ours)
            nll["llama_cpp"].append(nll_theirs)
            same.append(top1_ours == top1_theirs)
        ppl = {name: float(np.exp(np.concatenate(values).mean())) for name, values in nll.items()}
        rows.append({"length": length, "windows": len(batch), "kv_cache": kv_cache,
                     "ppl_transformers": ppl["transformers"], "ppl_llama_cpp": ppl["llama_cpp"],
                     "ppl_rel_diff": ppl["llama_cpp"] / ppl["transformers"] - 1,
                     "top1_agreement": float(np.concatenate(same).mean()), "max_abs_logit_diff": max_diff})
    return rows

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


def engine_parity(folder: str | Path, gguf_path: str | Path, windows: dict[int, np.ndarray],
                  kv_caches: tuple[str, ...] = ("f16",), threads: int = 1) -> list[dict]:
    """One row per (KV cache type, length): both engines' perplexity over the same (n, length) windows, the
    relative difference, the share of positions where both predict the same next token, and the largest |Δ logit|.
    Transformers scores each window once, whatever the number of KV cache types compared with it."""
    reference = transformers_logits(folder)
    rows = []
    for length, batch in sorted(windows.items()):
        engines = {kv: llama_cpp_logits(gguf_path, length, kv, threads) for kv in kv_caches}
        ours = {"nll": [], "top1": []}
        theirs = {kv: {"nll": [], "top1": [], "max_diff": 0.0} for kv in kv_caches}
        for ids in batch:
            logits = reference(ids)
            nll, top1 = _nll_and_top1(logits, ids)
            ours["nll"].append(nll)
            ours["top1"].append(top1)
            for kv, engine in engines.items():
                other = engine(ids)
                nll, top1 = _nll_and_top1(other, ids)
                theirs[kv]["nll"].append(nll)
                theirs[kv]["top1"].append(top1)
                theirs[kv]["max_diff"] = max(theirs[kv]["max_diff"], float(np.abs(logits - other).max()))
        ppl, top1 = float(np.exp(np.concatenate(ours["nll"]).mean())), np.concatenate(ours["top1"])
        for kv, scored in theirs.items():
            ppl_engine = float(np.exp(np.concatenate(scored["nll"]).mean()))
            rows.append({"length": length, "windows": len(batch), "kv_cache": kv,
                         "ppl_transformers": ppl, "ppl_llama_cpp": ppl_engine, "ppl_rel_diff": ppl_engine / ppl - 1,
                         "top1_agreement": float((top1 == np.concatenate(scored["top1"])).mean()),
                         "max_abs_logit_diff": scored["max_diff"]})
    return rows

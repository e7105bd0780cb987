"""Cross-engine parity: the exported model's perplexity and next-token choices through stock transformers (the
reference), this package's own loader (longrope.model.load_model, n̂ included) and llama.cpp (llama-cpp-python
running the GGUF of longrope.export.gguf), on the same held-out windows.

Each engine picks its factor set its own way (README, "The extended model in other engines"): transformers and
this package per sequence length, llama.cpp once per context from n_ctx rounded up to a multiple of 256. Each length
gets a llama.cpp context of exactly that length, as a user serving windows of that length would open it, so the
table shows what each engine gives, switch included.

May import: longrope.model, longrope.data.windows, longrope.evaluation.stats.
"""
from __future__ import annotations

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
    """`count` windows per length, drawn from held-out tokens by (seed, length) as the evaluation jobs draw theirs."""
    return {n: sample_windows(tokens, n, count, seed=[seed, n]) for n in lengths}


def _nll_and_top1(logits: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position NLL of the next token and the argmax prediction, from (T, V) float logits."""
    logits = torch.from_numpy(np.ascontiguousarray(logits[:-1], dtype=np.float32))
    nll = torch.nn.functional.cross_entropy(logits, torch.from_numpy(ids[1:]), reduction="none")
    return nll.numpy(), logits.argmax(-1).numpy()


def _forward_logits(model):
    @torch.no_grad()
    def logits(ids: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(ids)[None]).logits[0].float().numpy()
    return logits


def transformers_logits(folder: str | Path):
    """A function window → (T, V) float32 logits from stock transformers on the exported folder (no package code)."""
    from transformers import AutoModelForCausalLM

    return _forward_logits(AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                                dtype=torch.float32).eval())


def package_logits(folder: str | Path):
    """The same from this package's loader: the exact scaling saved with the export (longrope_scaling.json)."""
    return _forward_logits(load_model(folder))


def llama_cpp_logits(gguf_path: str | Path, length: int, kv_cache: str = "f16", threads: int = 1):
    """A function window → (T, V) logits from llama.cpp, in a context of `length` tokens with every position's
    logits kept; the KV cache in `kv_cache` (llama.cpp's default is f16). One batch of the whole window, computed in
    llama.cpp's default micro-batches of 512 (a micro-batch of the whole window would hold a length² attention
    matrix per head). The array returned is llama.cpp's own buffer, valid until the next window."""
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

    def logits(ids: np.ndarray) -> np.ndarray:
        llm.reset()  # eval then drops the previous window's cache entries
        llm.eval(ids.tolist())
        return llm.scores[: len(ids)]
    return logits


def engine_parity(folder: str | Path, gguf_path: str | Path | None, windows: dict[int, np.ndarray],
                  kv_caches: tuple[str, ...] = ("f16",), threads: int = 1) -> list[dict]:
    """One row per (engine, length) against stock transformers on the same (n, length) windows: both perplexities,
    the engine's relative difference with its paired 95 % interval over windows, the share of positions where both
    predict the same next token, and the largest |Δ logit|. Engines: this package's loader, and llama.cpp with each
    KV cache type when a GGUF is given. Transformers scores each window once for all of them."""
    reference = transformers_logits(folder)
    package = package_logits(folder)
    rows = []
    for length, batch in sorted(windows.items()):
        engines = {PACKAGE: package}
        if gguf_path is not None:
            engines.update({f"llama.cpp {kv} KV": llama_cpp_logits(gguf_path, length, kv, threads)
                            for kv in kv_caches})
        scores = {name: {"nll": [], "top1": [], "max_diff": 0.0} for name in ["transformers", *engines]}
        for ids in batch:
            expected = reference(ids)
            for name, engine in [("transformers", None), *engines.items()]:
                logits = expected if engine is None else engine(ids)
                nll, top1 = _nll_and_top1(logits, ids)
                scores[name]["nll"].append(nll.mean())
                scores[name]["top1"].append(top1)
                if engine is not None:
                    scores[name]["max_diff"] = max(scores[name]["max_diff"], float(np.abs(logits - expected).max()))
        truth = scores.pop("transformers")
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


def parity_table(rows: list[dict]) -> pd.DataFrame:
    """The rows for reading: one line per engine and length, the relative difference in percent with its interval."""
    table = pd.DataFrame(rows).set_index(["engine", "length"]).sort_index()
    percent = (table[["ppl_rel_diff", "ppl_rel_diff_lo", "ppl_rel_diff_hi"]] * 100).map(lambda v: f"{v:+.4f}")
    table["Δ ppl % [95 % CI]"] = percent["ppl_rel_diff"] + " [" + percent["ppl_rel_diff_lo"] + ", " \
        + percent["ppl_rel_diff_hi"] + "]"
    table["top-1 agreement %"] = table["top1_agreement"] * 100
    return table[["windows", "ppl_transformers", "ppl", "Δ ppl % [95 % CI]", "top-1 agreement %",
                  "max_abs_logit_diff"]]

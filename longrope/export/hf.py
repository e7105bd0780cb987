"""The Hugging Face export: the factor sets it carries (`export.switch`), a stock-transformers checkpoint of the
extended model (vLLM's keys included), the n̂ policy (`export.n_hat`), and the check that stock transformers
reproduces this package's forward on it.

May import: longrope.rope, longrope.model.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from longrope.data.tokenizer import load_tokenizer
from longrope.export.vllm import add_vllm_keys
from longrope.model import load_model, pick_attention, save_extended
from longrope.rope import RopeScaling

SWITCHES = ("dynamic", "long")
N_HAT_POLICIES = ("zero", "keep")  # export.n_hat (config/schema.yaml)


def switched_scaling(scaling: RopeScaling, switch: str) -> RopeScaling:
    """The scaling the export carries under `export.switch`: dynamic keeps the short set (used within the switch
    length); long drops it, so that the checkpoint, its config.json (short_factor = long_factor) and the GGUF give
    every request the long set, whichever way an engine picks a set (per sequence, per context, per server)."""
    if switch not in SWITCHES:
        raise ValueError(f"export.switch must be one of {', '.join(SWITCHES)}, got {switch!r}")
    return scaling if switch == "dynamic" else replace(scaling, short_factors=None, short_length=None)


def check_n_hat(scaling: RopeScaling, policy: str) -> None:
    """Refuse, before anything is written, a scaling whose n̂ the engines would drop under export.n_hat: zero."""
    if policy not in N_HAT_POLICIES:
        raise ValueError(f"export.n_hat must be one of {', '.join(N_HAT_POLICIES)}, got {policy!r}")
    if policy == "zero" and scaling.n_hat:
        raise ValueError(
            f"export.n_hat is 'zero', but the factors keep the original RoPE for their first {scaling.n_hat} positions "
            f"(n̂ = {scaling.n_hat}), which stock transformers, vLLM and llama.cpp silently drop: search the exported "
            "stages with n_hat: [0] (the workflow does so under export.n_hat: zero), or set export.n_hat: keep to "
            "export for this package's loader only")


def export_checkpoint(model_dir: str | Path, scaling: RopeScaling, switch: str, tokenizer_dir: str | Path,
                      out: str | Path, attention: str = "auto", n_hat: str = "zero") -> RopeScaling:
    """Save the model of `model_dir` with `scaling` under `switch` as a checkpoint (config.json, longrope_scaling.json,
    the tokenizer); returns the scaling it carries. Under export.n_hat `zero` the scaling must have n̂ = 0 and
    config.json gets vLLM's keys; under `keep` it is for this package's loader only, and gets none."""
    check_n_hat(scaling, n_hat)
    scaling = switched_scaling(scaling, switch)
    model = load_model(model_dir, attention=attention, scaling=scaling)  # float32: the weights stay exact
    save_extended(model, scaling, out)
    if n_hat == "zero":
        add_vllm_keys(out)
    load_tokenizer(tokenizer_dir).save(out)
    return scaling


@torch.no_grad()
def compare_with_stock(folder: str | Path, lengths: list[int], dtype: torch.dtype = torch.float32) -> list[dict]:
    """Stock transformers (no custom code) against this package on an exported folder, one row per length: the
    largest difference of the last hidden states over all positions and of the logits at the last 64 positions
    (a full T × vocabulary logits matrix does not fit at long lengths for a real vocabulary)."""
    from transformers import AutoModelForCausalLM

    if not lengths:
        raise ValueError("compare_with_stock: no lengths to compare (export.check_lengths)")
    stock = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype,
                                                 attn_implementation=pick_attention()).eval()
    ours = load_model(folder, dtype=dtype)
    rows = []
    for length in lengths:
        ids = torch.randint(0, stock.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(length))
        hidden = [m.model(input_ids=ids, use_cache=False).last_hidden_state for m in (stock, ours)]
        logits = [m.lm_head(h[:, -64:]) for m, h in zip((stock, ours), hidden)]
        rows.append({"length": length, "dtype": str(dtype).removeprefix("torch."),
                     "max_abs_diff_hidden": (hidden[0] - hidden[1]).abs().max().item(),
                     "max_abs_diff_logits": (logits[0] - logits[1]).abs().max().item(),
                     "identical": torch.equal(hidden[0], hidden[1]) and torch.equal(logits[0], logits[1])})
    return rows


"""Models as checkpoints: load a Hugging Face causal LM with exactly one RoPE scaling applied, save one with its
scaling, choose its attention kernel and compute dtype, score next tokens.

A checkpoint this package saves carries its exact scaling in longrope_scaling.json (n̂ included) beside
config.json's rope_parameters for stock transformers; `load_model` applies either the scaling it is given or the
saved one, never both, so a scaling cannot be applied twice.

May import: torch, transformers, longrope.rope, longrope.patching.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from longrope.patching import apply_rope_scaling, sequence_split
from longrope.rope import RopeScaling

ATTENTION_KERNELS = ("auto", "flash_attention_2", "sdpa", "eager")


def pick_attention(requested: str = "auto") -> str:
    """flash_attention_2 when CUDA and flash-attn are present, else sdpa; an explicit choice is kept."""
    if requested not in ATTENTION_KERNELS:
        raise ValueError(f"unknown attention kernel '{requested}' (expected one of {', '.join(ATTENTION_KERNELS)})")
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def compute_dtype(requested: str = "auto") -> torch.dtype:
    """compute.dtype resolved on the machine that runs the job (a cluster's submitting node may have no GPU):
    bfloat16 on CUDA and on CPUs with bf16 matrix units (AMX, AVX512-BF16: ≈ 3.5× fp32 there), else float32;
    an explicit choice is kept. Every job that computes resolves it here and records `dtype_name` of the result."""
    if requested != "auto":
        if requested not in DTYPES:
            raise ValueError(f"unknown compute dtype '{requested}' (expected auto, {', '.join(DTYPES)})")
        return DTYPES[requested]
    return torch.bfloat16 if torch.cuda.is_available() or _cpu_has_bf16_units() else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """The config's word for a torch dtype ('float32', 'bfloat16'), as recorded in artifacts."""
    return str(dtype).removeprefix("torch.")


def training_precision(precision: str, requested_dtype: str) -> str:
    """finetune.precision resolved: 'bf16' (autocast over fp32 weights) or 'fp32'; 'auto' follows compute.dtype."""
    if precision != "auto":
        return precision
    return "bf16" if compute_dtype(requested_dtype) == torch.bfloat16 else "fp32"


def _cpu_has_bf16_units() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no way to tell, so the safe choice
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def tiny_llama(vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
               rope_theta: float, original_length: int, seed: int):
    """The embedded default's base model: a small Llama whose rope_parameters record θ and L0."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=original_length, rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


# The embedded default's base model (config/config.yaml: 4 layers, hidden 256, 4 heads of 64, MLP 672, bytes), for
# benchmarks that need its shape, not its training.
TINY_LLAMA = dict(vocab_size=258, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=672,
                  rope_theta=500.0, original_length=128, seed=0)

SCALING_FILE = "longrope_scaling.json"


def load_model(path: str | Path, attention: str = "auto", dtype: torch.dtype = torch.float32,
               scaling: RopeScaling | None = None):
    """A causal LM from a local folder (never the network): config.json + safetensors weights, with one RoPE
    scaling applied and verified: `scaling` when given, else the one saved with the folder (if any)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model directory {path} has no config.json")
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, attn_implementation=pick_attention(attention), dtype=dtype
    ).eval()
    scaling = scaling or saved_scaling(path)
    if scaling is not None:
        apply_rope_scaling(model, scaling)
    return model


def saved_scaling(path: str | Path) -> RopeScaling | None:
    """The RoPE scaling saved with a model folder (save_extended; a fine-tuned model: the one it was trained with),
    or None for a model this package did not extend."""
    file = Path(path, SCALING_FILE)
    return RopeScaling.from_dict(json.loads(file.read_text())) if file.is_file() else None


def hf_rope_parameters(scaling: RopeScaling, rope_parameters: dict) -> dict:
    """transformers' `rope_parameters` for a LongRoPE scaling (Phi-3 layout): long and short factor sets, the
    attention factor, and original_max_position_embeddings as the longest sequence that uses the short set.
    Equal to our forward when n̂ = 0; transformers has no n̂."""
    if scaling.method != "longrope":
        raise ValueError(f"only LongRoPE scalings are exported, not {scaling.method!r}")
    kept = {k: rope_parameters[k] for k in ("rope_theta", "partial_rotary_factor") if k in rope_parameters}
    return {**kept, "rope_type": "longrope", "long_factor": list(scaling.factors),
            "short_factor": list(scaling.short_factors or scaling.factors), "factor": scaling.scale,
            "attention_factor": scaling.attention_scale, "original_max_position_embeddings": scaling.switch_length}


def save_extended(model, scaling: RopeScaling, folder: str | Path) -> None:
    """Save `model` with `scaling` as a Hugging Face checkpoint: config.json's rope_parameters for stock
    transformers, longrope_scaling.json for this package (exact, n̂ included)."""
    folder = Path(folder)
    model.config.rope_parameters = hf_rope_parameters(scaling, model.config.rope_parameters)
    model.config.max_position_embeddings = scaling.target_length
    model.save_pretrained(folder)
    (folder / SCALING_FILE).write_text(json.dumps(scaling.to_dict(), indent=2))



def next_token_nll(model, ids: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Per-token NLL (B, T-1) of ids[:, 1:] given ids[:, :-1]; the vocabulary projection runs in chunks
    so a long sequence never holds a full T×V logits matrix. A model split over ranks by
    longrope.parallelism.sequence (attached by longrope.patching) computes it there, every rank of the group
    getting the whole result."""
    split = sequence_split(model)
    if split is not None:
        return split.next_token_nll(model, ids, chunk_size)
    hidden = model.model(input_ids=ids[:, :-1], use_cache=False).last_hidden_state
    return token_nll(model, hidden, ids[:, 1:], chunk_size)


def token_nll(model, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Per-token NLL of `targets` (B, T) given the last hidden states (B, T, H), T×V logits never whole at once;
    0 where a target is -100 (padding). Under autograd the loss is tiled (DeepSpeed ALST's TiledFusedLogitsLoss):
    each chunk's logits are recomputed in the backward, so training keeps no T×V tensor either, only the NLL."""

    def chunk_nll(h, t):
        # (B·T, V) rows: cross-entropy over a transposed (B, V, T) view runs ≈ 7× slower on CPU
        logits = model.lm_head(h).float()
        return nn.functional.cross_entropy(logits.flatten(0, 1), t.flatten(), reduction="none").view(t.shape)

    tiled = torch.is_grad_enabled() and hidden.requires_grad
    return torch.cat([
        checkpoint(chunk_nll, h, t, use_reentrant=False) if tiled else chunk_nll(h, t)
        for h, t in zip(hidden.split(chunk_size, dim=1), targets.split(chunk_size, dim=1))
    ], dim=1)



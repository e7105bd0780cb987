"""Load a Hugging Face causal LM, apply a RoPE scaling to it, prove the scaling took effect."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .rope import RopeScaling

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
    """bfloat16 on CUDA and on CPUs with bf16 matrix units (AMX, AVX512-BF16: ≈ 3.5× fp32 there), else float32;
    an explicit choice is kept."""
    if requested != "auto":
        if requested not in DTYPES:
            raise ValueError(f"unknown compute dtype '{requested}' (expected auto, {', '.join(DTYPES)})")
        return DTYPES[requested]
    return torch.bfloat16 if torch.cuda.is_available() or _cpu_has_bf16_units() else torch.float32


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


def load_model(path: str | Path, attention: str = "auto", dtype: torch.dtype = torch.float32):
    """A causal LM from a local folder (never the network): config.json + safetensors weights. A model this
    package saved carries its exact RoPE scaling in longrope_scaling.json (n̂ included), which is applied."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model directory {path} has no config.json")
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, attn_implementation=pick_attention(attention), dtype=dtype
    ).eval()
    scaling = saved_scaling(path)
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


@torch.no_grad()
def compare_with_stock(folder: str | Path, lengths: list[int], dtype: torch.dtype = torch.float32) -> list[dict]:
    """Stock transformers (no custom code) against this package on an exported folder, one row per length: the
    largest difference of the last hidden states over all positions and of the logits at the last 64 positions
    (a full T × vocabulary logits matrix does not fit at long lengths for a real vocabulary)."""
    from transformers import AutoModelForCausalLM

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


def rope_geometry(config) -> tuple[int, float]:
    """(rotary head dim, rope θ) of a transformers-5 model config."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    head_dim = int(head_dim * getattr(config, "partial_rotary_factor", 1.0))
    return head_dim, float(config.rope_parameters["rope_theta"])


class ScaledRotaryEmbedding(nn.Module):
    """Drop-in for `model.model.rotary_emb`: returns (cos, sin) of a `RopeScaling`, counts its calls.

    `scaling` may also be a tuple of scalings, one per batch row: row b's cos and sin, (B, T, head_dim), then come
    from scaling b, so one forward scores several candidate scalings (the attention broadcasts cos and sin over
    heads, never over rows)."""

    def __init__(self, scaling: RopeScaling | tuple[RopeScaling, ...], head_dim: int, base: float):
        super().__init__()
        self.scaling, self.head_dim, self.base = scaling, head_dim, base
        self.calls = 0
        # The whole sequence's length when a forward sees only a shard of its positions (sequence parallelism);
        # None: the largest position + 1.
        self.sequence_length: int | None = None

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor):
        self.calls += 1
        position_ids = position_ids.to(x.device)
        if isinstance(self.scaling, RopeScaling):
            cos, sin = self.scaling.cos_sin(position_ids, self.head_dim, self.base, self.sequence_length)
        else:  # transformers passes one row of positions for the whole batch
            rows = position_ids.expand(len(self.scaling), -1)
            cos, sin = (torch.stack(t) for t in zip(*(
                s.cos_sin(p, self.head_dim, self.base, self.sequence_length) for s, p in zip(self.scaling, rows))))
        return cos.to(x.dtype), sin.to(x.dtype)


class RopeNotAppliedError(RuntimeError):
    pass


def apply_rope_scaling(model, scaling: RopeScaling, verify: bool = True):
    """Swap the model's rotary module for `scaling` and, unless `verify` is off, prove the forward uses it.

    Proof: a short probe whose positions span the target length must call the new module, and, when the
    scaling changes any angle there, must change the logits. A silent no-op (the upstream code's failure
    with transformers ≥ 4.45) raises RopeNotAppliedError.
    """
    inner = getattr(model, "model", None)
    if inner is None or not isinstance(getattr(inner, "rotary_emb", None), nn.Module):
        raise RopeNotAppliedError(f"{type(model).__name__} has no model.rotary_emb: architecture not supported")
    head_dim, base = rope_geometry(model.config)
    scaling.inv_freq(head_dim, base)  # fails early on a factor list of the wrong length
    old = inner.rotary_emb
    new = ScaledRotaryEmbedding(scaling, head_dim, base)
    if not verify:
        inner.rotary_emb = new
        return model
    probe_ids, positions = _probe(model, scaling)
    # The reference is plain RoPE through the same module type, so re-patching an already scaled model works too.
    unchanged = RopeScaling(original_length=scaling.original_length, target_length=scaling.original_length)
    inner.rotary_emb = ScaledRotaryEmbedding(unchanged, head_dim, base)
    before = _logits(model, probe_ids, positions)
    inner.rotary_emb = new
    after = _logits(model, probe_ids, positions)
    if new.calls == 0:
        inner.rotary_emb = old
        raise RopeNotAppliedError(f"{type(model).__name__}'s forward never called model.rotary_emb: RoPE scaling not applied")
    changes_angles = not torch.equal(torch.stack(scaling.cos_sin(positions, head_dim, base)),
                                     torch.stack(unchanged.cos_sin(positions, head_dim, base)))
    if changes_angles and torch.equal(before, after):
        inner.rotary_emb = old
        raise RopeNotAppliedError(f"{type(model).__name__}'s logits did not change: the rotary output is not used")
    new.calls = 0
    return model


def next_token_nll(model, ids: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Per-token NLL (B, T-1) of ids[:, 1:] given ids[:, :-1]; the vocabulary projection runs in chunks
    so a long sequence never holds a full T×V logits matrix. A model split over ranks by
    longrope.sequence_parallel computes it there, every rank of the group getting the whole result."""
    split = getattr(model, "sequence_parallel", None)
    if split is not None:
        return split.next_token_nll(model, ids, chunk_size)
    hidden = model.model(input_ids=ids[:, :-1], use_cache=False).last_hidden_state
    return token_nll(model, hidden, ids[:, 1:], chunk_size)


def token_nll(model, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Per-token NLL of `targets` (B, T) given the last hidden states (B, T, H), T×V logits never whole at once;
    0 where a target is -100 (padding). Under autograd the loss is tiled (DeepSpeed ALST's TiledFusedLogitsLoss):
    each chunk's logits are recomputed in the backward, so training keeps no T×V tensor either, only the NLL."""

    def chunk_nll(h, t):
        return nn.functional.cross_entropy(model.lm_head(h).float().transpose(1, 2), t, reduction="none")

    tiled = torch.is_grad_enabled() and hidden.requires_grad
    return torch.cat([
        checkpoint(chunk_nll, h, t, use_reentrant=False) if tiled else chunk_nll(h, t)
        for h, t in zip(hidden.split(chunk_size, dim=1), targets.split(chunk_size, dim=1))
    ], dim=1)


def _probe(model, scaling: RopeScaling, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (1, n), generator=generator)
    positions = torch.arange(max(0, scaling.target_length - n), scaling.target_length)  # where scalings differ most
    return ids, positions


@torch.no_grad()
def _logits(model, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    # An explicit mask stops transformers from reading gaps in position_ids as packed-sequence boundaries.
    mask = torch.ones_like(ids, device=device)
    return model(input_ids=ids.to(device), position_ids=positions[None].to(device), attention_mask=mask,
                 use_cache=False).logits.float().cpu()

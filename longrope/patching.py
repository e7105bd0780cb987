"""Model patching: the one module that changes what a loaded Hugging Face model computes.

Four patches, each replacing one piece on the instance so weights and state-dict names stay:
* RoPE — `apply_rope_scaling` swaps `model.model.rotary_emb` for a `ScaledRotaryEmbedding` and proves the forward
  uses it (a silent no-op was the upstream code's worst bug);
* MLP tiling — `tile_mlp` runs each decoder layer's MLP on tiles of the sequence (DeepSpeed ALST's TiledMLP);
* attention kernel — `replace_attention_kernel` routes transformers' attention function through a wrapper
  (longrope.parallelism.sequence's Ulysses all-to-all) and `plain_attention_kernel` gives the original back;
* sequence split — `attach_sequence_split` hands a model's next-token loss to a sequence-parallel group
  (`longrope.model.next_token_nll` asks `sequence_split`), so scoring and training code stay unaware of it.

May import: torch, transformers, longrope.rope.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from longrope.rope import RopeScaling, rope_geometry


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



def scaled_rotary(model) -> ScaledRotaryEmbedding:
    """The rotary module `apply_rope_scaling` put in `model`; an error when the model was never patched."""
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    if not isinstance(rotary, ScaledRotaryEmbedding):
        raise RopeNotAppliedError("the model's RoPE scaling was never applied (longrope.patching.apply_rope_scaling)")
    return rotary


def switch_scaling(model, scaling: RopeScaling | tuple[RopeScaling, ...]) -> None:
    """Give the already verified rotary module of `model` another scaling (or one per batch row) without a new
    proof: the search switches it per candidate, thousands of times, and the forward path has not changed."""
    scaled_rotary(model).scaling = scaling


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


# ---------------------------------------------------------------------------------------------
# MLP tiling. The MLP works token by token, so tiling changes no number; it changes what is alive at once: a whole
# sequence of S tokens holds S × 3·intermediate values in the MLP and, under autograd, keeps them for the backward;
# tiled, only one tile's exist, each recomputed in the backward. With sequence parallelism S is a rank's shard.


def tile_mlp(model, tokens: int):
    """Run every decoder layer's MLP of `model` on tiles of `tokens` positions. The modules and their weights stay
    where they are (state-dict names unchanged, ZeRO-3's hooks on the projections still fire); only the MLP's
    forward is replaced on the instance."""
    if tokens < 1:
        raise ValueError(f"MLP tiles must hold at least one token, got {tokens}")
    for layer in model.model.layers:
        layer.mlp.forward = _tiled(layer.mlp.forward, tokens)
    return model


def _tiled(forward, tokens: int):
    def tiled_forward(hidden: torch.Tensor) -> torch.Tensor:  # hidden: (B, S, H)
        if hidden.shape[1] <= tokens:
            return forward(hidden)
        recompute = torch.is_grad_enabled() and hidden.requires_grad
        return torch.cat([checkpoint(forward, tile, use_reentrant=False) if recompute else forward(tile)
                          for tile in hidden.split(tokens, dim=1)], dim=1)

    return tiled_forward


# ---------------------------------------------------------------------------------------------
# Attention kernel. transformers looks the kernel up by name in ALL_ATTENTION_FUNCTIONS at every forward.

_PLAIN_KERNELS: dict = {}  # transformers' attention functions as they were before a wrapper replaced them


def plain_attention_kernel(name: str):
    """transformers' own attention function `name` (sdpa, flash_attention_2), as it was before any wrapper."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return _PLAIN_KERNELS.setdefault(name, ALL_ATTENTION_FUNCTIONS[name])


def replace_attention_kernel(name: str, wrapper) -> None:
    """Route every forward's attention `name` through `wrapper`, which may call `plain_attention_kernel(name)`."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    plain_attention_kernel(name)
    ALL_ATTENTION_FUNCTIONS[name] = wrapper


# ---------------------------------------------------------------------------------------------
# Sequence split: the object (longrope.parallelism.sequence) that computes a split model's next-token NLL.


def attach_sequence_split(model, split) -> None:
    model.sequence_parallel = split


def sequence_split(model):
    """The sequence-parallel group `model`'s next-token NLL is computed over, or None."""
    return getattr(model, "sequence_parallel", None)

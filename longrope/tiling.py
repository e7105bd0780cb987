"""Sequence-tiled MLP (DeepSpeed ALST's TiledMLP): each decoder layer's MLP runs on tiles of `tokens` positions.

The MLP works token by token, so tiling changes no number; it changes what is alive at once. A whole sequence of
S tokens holds S × 3·intermediate values in the MLP (gate, up, their product) and, under autograd, keeps them for
the backward in every layer; tiled, only one tile's exist, and under autograd each tile is recomputed in the
backward (activation checkpointing per tile), so a layer keeps its MLP's input and output only. With sequence
parallelism S is a rank's shard, so this part of a rank's memory falls as T/N. The loss is tiled the same way in
longrope.model.token_nll.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


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

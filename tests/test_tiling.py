"""Sequence tiling (longrope.patching, longrope.model.token_nll): the same losses and gradients as untiled, with the
tiles recomputed in the backward instead of kept."""
import copy

import pytest
import torch
from torch import nn

from longrope.model import next_token_nll, token_nll
from longrope.patching import apply_rope_scaling
from longrope.rope import RopeScaling
from longrope.patching import tile_mlp


def loss_and_gradients(model, ids):
    model.zero_grad()
    loss = next_token_nll(model, ids).mean()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_tiled_mlp_changes_no_number_and_keeps_the_weights_names(tiny_model):
    apply_rope_scaling(tiny_model, RopeScaling("yarn", 128, 512))
    tiled = tile_mlp(copy.deepcopy(tiny_model), 7)  # 7 does not divide the 99 inputs
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 100), generator=torch.Generator().manual_seed(0))
    (loss, grads), (tiled_loss, tiled_grads) = (loss_and_gradients(m, ids) for m in (tiny_model, tiled))
    torch.testing.assert_close(tiled_loss, loss, rtol=1e-6, atol=0)
    assert tiled_grads.keys() == grads.keys() and tiled.state_dict().keys() == tiny_model.state_dict().keys()
    for name in grads:
        torch.testing.assert_close(tiled_grads[name], grads[name], rtol=1e-5, atol=1e-7)


def test_a_tiled_mlp_keeps_no_intermediate_for_the_backward(tiny_model):
    """Tensors autograd saves during one layer's MLP: untiled, the (tokens × intermediate) gate, up and product;
    tiled, the MLP's input only (the tiles are recomputed)."""
    mlp = tiny_model.model.layers[0].mlp
    hidden = torch.randn(1, 64, tiny_model.config.hidden_size, requires_grad=True)

    def saved_elements(module):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            module(hidden)
        return sum(sizes)

    untiled = saved_elements(mlp)
    tile_mlp(tiny_model, 16)
    tiled = saved_elements(mlp)
    assert untiled >= 3 * 64 * tiny_model.config.intermediate_size
    assert tiled <= 2 * hidden.numel()


def test_the_loss_is_tiled_under_autograd(tiny_model):
    """The loss's chunks keep only the hidden states for the backward, never the chunk's logits, and the gradients
    equal those of the plain cross-entropy."""
    hidden = torch.randn(1, 40, tiny_model.config.hidden_size, requires_grad=True)
    targets = torch.randint(0, tiny_model.config.vocab_size, (1, 40))
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        nll = token_nll(tiny_model, hidden, targets, chunk_size=16)
    assert max(sizes) < 16 * tiny_model.config.vocab_size
    nll.sum().backward()
    plain = hidden.detach().requires_grad_()
    nn.functional.cross_entropy(tiny_model.lm_head(plain).transpose(1, 2), targets, reduction="sum").backward()
    torch.testing.assert_close(hidden.grad, plain.grad, rtol=1e-5, atol=1e-7)


def test_tiles_must_hold_a_token(tiny_model):
    with pytest.raises(ValueError, match="at least one token"):
        tile_mlp(tiny_model, 0)

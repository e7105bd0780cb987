"""Ulysses sequence parallelism: one sequence split over the N ranks of a process group (DeepSpeed ALST).

Rank r holds the tokens [r·S, (r+1)·S) of a sequence padded at its end to N·S (causal attention: the padding is
seen by no real token, and its outputs are dropped). Every layer but attention works token by token, so it runs on
the shard as it is. Attention is DeepSpeed's `UlyssesSPAttentionHF`: an all-to-all turns (all heads, S tokens) into
(H/N heads, all N·S tokens), the model's own kernel (sdpa or flash-attn) runs causal attention on them, and a
second all-to-all turns the result back. A rank thus holds the activations of S = T/N tokens. Heads must split
evenly: N divides the attention heads, and the KV heads divide N or N divides them (DeepSpeed replicates KV heads
when there are fewer than N).

Why DeepSpeed's: with our pins (torch 2.13.0 CPU, transformers 5.24.0, deepspeed 0.19.8) it runs on gloo between CPU
processes, forward and backward, and its sharded logits equal the unsharded ones. It is used as a module, not
through `register_with_transformers`, which replaces the kernel for every forward of the process: a rank here also
runs plain forwards (the RoPE patch's proof on 16 tokens), so our wrapper hands to Ulysses only while a sharded
forward is in progress.

Two uses, both attaching the split to the model (longrope.patching.attach_sequence_split), to which
`longrope.model.next_token_nll` hands over:
* training — `split_sequences(model, n)` on every rank of a torchrun/srun job: ranks r·N … r·N + N-1 share one row;
* scoring — `spread(model, folder, n)`: this process leads N - 1 follower processes it starts, which load the same
  model and follow each `next_token_nll` with their shards (the leader sends the ids and the current RoPE scaling).
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys

import torch
import torch.distributed as dist
from torch import nn

from longrope.model import dtype_name, load_model, token_nll
from longrope.parallelism.memory import sequence_split_error
from longrope.patching import (apply_rope_scaling, attach_sequence_split, plain_attention_kernel,
                               replace_attention_kernel, scaled_rotary, switch_scaling)

IGNORE = -100  # cross_entropy's ignore_index: the padding's targets


class SequenceParallel:
    """The sharded forward and loss of `model` over `group`; attached as `model.sequence_parallel`."""

    def __init__(self, model, group):
        error = sequence_split_error(model.config.num_attention_heads, model.config.num_key_value_heads,
                                     dist.get_world_size(group))
        if error:
            raise ValueError(f"sequence parallelism: {error}")
        kernel = model.config._attn_implementation
        if kernel not in ("sdpa", "flash_attention_2"):
            raise ValueError(f"sequence parallelism runs sdpa or flash_attention_2 attention, not {kernel!r}")
        self.group, self.rank, self.size = group, dist.get_rank(group), dist.get_world_size(group)
        self.sharded = False
        self._config, self._ulysses = model.config, {}
        self._kernel = plain_attention_kernel(kernel)
        replace_attention_kernel(kernel, self._attention)

    def next_token_nll(self, model, ids: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """Every rank of the group passes the same `ids` (B, T) and gets the whole (B, T-1) NLL; its backward sums
        the group's gradients into each rank's shard, so each rank's weight gradients are N times its shard's part:
        averaged over all ranks (DeepSpeed), they are the gradients of the whole sequence."""
        batch, length = ids.shape[0], ids.shape[1] - 1
        shard = -(-length // self.size)
        begin, pad = self.rank * shard, shard * self.size - length
        inputs = nn.functional.pad(ids[:, :-1], (0, pad))[:, begin : begin + shard]
        targets = nn.functional.pad(ids[:, 1:], (0, pad), value=IGNORE)[:, begin : begin + shard]
        positions = torch.arange(begin, begin + shard, device=ids.device).expand(batch, -1)
        rotary = scaled_rotary(model)  # ours: transformers' own would take the shard's length for the sequence's
        rotary.sequence_length = length
        # Gradient checkpointing recomputes attention during the backward: it stays sharded until then.
        self.sharded = True
        try:
            hidden = model.model(input_ids=inputs, position_ids=positions, use_cache=False).last_hidden_state
        finally:
            rotary.sequence_length = None
            self.sharded = torch.is_grad_enabled()
        return _GatherSequence.apply(token_nll(model, hidden, targets, chunk_size), self.group)[:, :length]

    def _attention(self, module, query, key, value, attention_mask, *args, **kwargs):
        if not self.sharded:
            return self._kernel(module, query, key, value, attention_mask, *args, **kwargs)
        # The mask transformers built covers the shard only; after the all-to-all the kernel masks causally.
        return self._ulysses_for(query.shape[0])(module, query, key, value, None, *args, **kwargs)

    def _ulysses_for(self, batch: int):
        """DeepSpeed's attention, one per batch size (it checks the shapes it is given against it)."""
        if batch not in self._ulysses:
            from deepspeed.runtime.sequence_parallel.ulysses_sp import (
                UlyssesSPAttentionHF,
            )

            c = self._config
            self._ulysses[batch] = UlyssesSPAttentionHF(
                attn=self._kernel, batch_size=batch, attn_head_count=c.num_attention_heads,
                attn_head_size=getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
                kv_head_count=c.num_key_value_heads, num_hidden_layers=c.num_hidden_layers,
                process_group=self.group, seq_length_is_variable=True)
        return self._ulysses[batch]


class _GatherSequence(torch.autograd.Function):
    """All ranks' (B, S) shards → (B, N·S) on every rank; backward: the group's gradients summed, this rank's part."""

    @staticmethod
    def forward(ctx, shard: torch.Tensor, group):
        ctx.group, ctx.rank, ctx.shard = group, dist.get_rank(group), shard.shape[1]
        parts = [torch.empty_like(shard) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, shard.contiguous(), group=group)
        return torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[:, ctx.rank * ctx.shard : (ctx.rank + 1) * ctx.shard], None


def split_sequences(model, size: int) -> tuple[int, int]:
    """Training: split every row over `size` consecutive ranks of the running job. Returns (data-parallel rank,
    data-parallel ranks): the rows are dealt to groups, each group's ranks take the same rows."""
    rank, world = dist.get_rank(), dist.get_world_size()
    if size == 1:
        return rank, world
    if world % size:
        raise ValueError(f"parallel.sequence {size} does not divide the job's {world} ranks")
    groups = [dist.new_group(list(range(first, first + size))) for first in range(0, world, size)]  # collective
    attach_sequence_split(model, SequenceParallel(model, groups[rank // size]))
    return rank // size, world // size


# ---------------------------------------------------------------------------------------------
# Scoring: a leader (the fitness replica or the evaluation script) and the followers it starts.

class _Leader(SequenceParallel):
    def __init__(self, model, group, followers: list[subprocess.Popen]):
        super().__init__(model, group)
        self.followers = followers
        atexit.register(self.close)  # a script that fails still stops its followers

    def next_token_nll(self, model, ids: torch.Tensor, chunk_size: int) -> torch.Tensor:
        dist.broadcast_object_list([(scaled_rotary(model).scaling, tuple(ids.shape), chunk_size)], 0, self.group)
        dist.broadcast(ids, 0, self.group)
        return super().next_token_nll(model, ids, chunk_size)

    def close(self) -> None:
        if not self.followers:
            return
        dist.broadcast_object_list([None], 0, self.group)
        for follower in self.followers:
            try:
                follower.wait(timeout=60)
            except subprocess.TimeoutExpired:  # stuck in a collective the leader left half-way
                follower.kill()
        self.followers = []
        dist.destroy_process_group()


def spread(model, folder: str, size: int, threads: int) -> None:
    """Split `model`'s sequences over this process and `size` - 1 followers that load `folder` the same way
    (same attention kernel and dtype; the next GPUs after this one's). `model.sequence_parallel.close()` (or the
    end of this process) stops them."""
    device = next(model.parameters()).device
    with socket.socket() as s:  # a free port for this group alone
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dtype = dtype_name(next(model.parameters()).dtype)
    followers = [subprocess.Popen(
        [sys.executable, "-m", "longrope.parallelism.sequence", folder, model.config._attn_implementation, dtype,
         str(rank), str(size), str(port), str(threads), _device_after(device, rank)])
        for rank in range(1, size)]
    attach_sequence_split(model, _Leader(model, _join(0, size, port), followers))


def _device_after(device: torch.device, offset: int) -> str:
    return "cpu" if device.type == "cpu" else f"cuda:{(device.index or 0) + offset}"


def _join(rank: int, size: int, port: int):
    import deepspeed

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=size)
    deepspeed.init_distributed()  # DeepSpeed's all-to-all runs through deepspeed.comm, on the group just formed
    return dist.group.WORLD


def _follow(folder: str, attention: str, dtype: str, rank: int, size: int, port: int, threads: int,
            device: str) -> None:
    """A follower: the leader's model on its own device, the leader's shard computations mirrored until it stops."""
    torch.set_num_threads(threads)
    model = load_model(folder, attention=attention, dtype=getattr(torch, dtype)).to(device)
    split = SequenceParallel(apply_rope_scaling(model, _placeholder(model), verify=False), _join(rank, size, port))
    with torch.no_grad():
        while True:
            request = [None]
            dist.broadcast_object_list(request, 0, split.group)
            if request[0] is None:
                break
            scaling, shape, chunk_size = request[0]
            ids = torch.empty(shape, dtype=torch.long, device=device)
            dist.broadcast(ids, 0, split.group)
            switch_scaling(model, scaling)
            split.next_token_nll(model, ids, chunk_size)
    dist.destroy_process_group()


def _placeholder(model):
    from longrope.rope import RopeScaling

    length = model.config.max_position_embeddings
    return RopeScaling(original_length=length, target_length=length)


if __name__ == "__main__":
    folder, attention, dtype, *numbers, device = sys.argv[1:]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _follow(folder, attention, dtype, *map(int, numbers), device)

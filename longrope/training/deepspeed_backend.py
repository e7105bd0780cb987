"""DeepSpeed for the shared training loop: ZeRO stages, bf16, several processes (gloo on CPU, NCCL on GPUs)."""
from __future__ import annotations

import os
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from longrope.model import next_token_nll
from longrope.parallelism.sequence import split_sequences
from longrope.training.deepspeed_config import fill_deepspeed_config
from longrope.training.loop import TrainConfig, parameter_groups

CHECKPOINT_TAG = "deepspeed"


def init_process_group() -> None:
    """Join the launcher's process group (deepspeed, torchrun, srun), or form a group of one."""
    import deepspeed

    if "RANK" not in os.environ and int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
        os.environ.update(slurm_rank_environment(os.environ))
    if "RANK" not in os.environ:
        with socket.socket() as s:  # a free port for the single-process group
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def slurm_rank_environment(env) -> dict:
    """torch.distributed's variables for a rank that srun started (a multi-node fine-tune): SLURM's task ids are the
    ranks, the step's first node is the master, and the port follows from the job id so every rank agrees on it."""
    first_node = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_STEP_NODELIST"]], capture_output=True,
                                text=True, check=True).stdout.split()[0]
    return {"RANK": env["SLURM_PROCID"], "LOCAL_RANK": env["SLURM_LOCALID"], "WORLD_SIZE": env["SLURM_STEP_NUM_TASKS"],
            "MASTER_ADDR": first_node, "MASTER_PORT": str(20000 + int(env["SLURM_JOB_ID"]) % 20000)}


class DeepSpeedBackend:
    """The TorchBackend interface over a DeepSpeed engine; checkpoints are DeepSpeed's own (sharded) format.
    With `sequence` N > 1, each N consecutive ranks share every row (longrope.parallelism.sequence); DeepSpeed, unaware
    of it, averages gradients over all ranks, which the sharded loss's backward accounts for."""

    def __init__(self, model, cfg: TrainConfig, config: dict, precision: str = "fp32", sequence: int = 1):
        import deepspeed

        init_process_group()
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.data_rank, self.data_ranks = split_sequences(model, sequence)
        filled = fill_deepspeed_config(config, cfg, self.data_ranks, precision, sequence)
        optimizer = None if "optimizer" in filled else torch.optim.AdamW(
            parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=filled)
        self.zero_stage = filled.get("zero_optimization", {}).get("stage", 0)

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        return next_token_nll(self.engine.module, ids.to(self.engine.device)).mean()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def backward(self, loss: torch.Tensor, share: float) -> None:
        """Accumulate the gradient of `loss`, a micro-batch's mean, weighted by its `share` of this step's rows (not
        DeepSpeed's 1 / gradient_accumulation_steps). DeepSpeed's step after every micro-batch, as DeepSpeed
        expects: its micro-step counter makes the step's last one (gradient_accumulation_steps = forwards per
        step) reduce the gradients and update the weights, the others no-ops."""
        self.engine.backward(loss * share, scale_wrt_gas=False)
        self.engine.step()

    def step(self) -> float:
        grad_norm = self.engine.get_global_grad_norm()
        return float(grad_norm) if grad_norm is not None else float("nan")

    def mean(self, value: float) -> float:
        tensor = torch.tensor([value], dtype=torch.float64, device=self.engine.device)
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def barrier(self) -> None:
        dist.barrier()

    def save(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder), tag=CHECKPOINT_TAG)

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder), tag=CHECKPOINT_TAG)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint in {folder}")

    @contextmanager
    def full_model(self):
        """ZeRO-3 shards every parameter: gather them for the duration (read-only)."""
        if self.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.engine.module.parameters()), modifier_rank=None):
                yield self.engine.module
        else:
            yield self.engine.module

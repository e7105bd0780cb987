"""The training loop shared by pretraining and fine-tuning: deterministic batches, checkpoints, resume."""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from tqdm import tqdm

from longrope.data.chunks import Chunks
from longrope.data.prompts import passkey_training_example
from longrope.model import next_token_nll

logger = logging.getLogger(__name__)

SCHEDULES = ("cosine", "linear", "constant")


SAMPLINGS = ("random", "blocks", "chunks")


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int                # global batch, over all processes and accumulation steps
    seq_len: int
    lr: float
    warmup_steps: int = 0
    schedule: str = "cosine"      # after warm-up: cosine to min_lr_ratio·lr, linear to 0, or constant
    min_lr_ratio: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    passkey_fraction: float = 0.0  # share of each batch's long rows replaced by synthetic passkey examples
    micro_batch_size: int | None = None  # rows per forward and process; None = as many as accumulation() allows
    # Windows at any offset, whole seq_len blocks, or the paper's BOS/EOS-bookended chunks drawn without replacement
    # (longrope.data.chunks), of which a run may go through `epochs` permutations.
    sampling: str = "random"
    epochs: int = 1
    # Mixed context window (LongRoPE2): this share of each batch's rows are short windows of short_len tokens, which
    # a scaling with a short set of ones (rope.mixed_window_scaling) runs under the original RoPE.
    short_fraction: float = 0.0
    short_len: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every", "epochs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown lr schedule '{self.schedule}' (expected one of {', '.join(SCHEDULES)})")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling '{self.sampling}' (expected one of {', '.join(SAMPLINGS)})")
        if not 0.0 <= self.passkey_fraction <= 1.0:
            raise ValueError(f"passkey_fraction must lie in [0, 1], got {self.passkey_fraction}")
        if self.micro_batch_size is not None and not 0 < self.micro_batch_size <= self.batch_size:
            raise ValueError(f"micro_batch_size must lie in [1, batch_size], got {self.micro_batch_size}")
        if not 0.0 <= self.short_fraction < 1.0:
            raise ValueError(f"short_fraction must lie in [0, 1), got {self.short_fraction}")
        if self.short_fraction:
            if self.short_len is None or not 0 < self.short_len <= self.seq_len:
                raise ValueError(f"short_len must lie in [1, seq_len = {self.seq_len}], got {self.short_len}")
            short = self.rows()[1]
            if not 0 < short < self.batch_size:
                raise ValueError(f"short_fraction {self.short_fraction} of batch_size {self.batch_size} gives {short} "
                                 f"short rows: a mixed context window needs at least one short and one long row")

    def rows(self) -> tuple[int, int]:
        """(long rows, short rows) of every batch; passkey examples are among the long rows."""
        short = round(self.batch_size * self.short_fraction)
        return self.batch_size - short, short

    def chunk_rows(self) -> int:
        """Rows of every batch drawn from chunks (sampling 'chunks'): the long rows that are not passkey examples."""
        n_long = self.rows()[0]
        return n_long - round(n_long * self.passkey_fraction)

    def accumulation(self, world_size: int) -> tuple[int, int]:
        """(rows per forward, forwards per step) on each of `world_size` processes. Each takes its share of the long
        rows and of the short rows; rows of different lengths never share a forward, so the micro-batch size must
        divide both shares (without micro_batch_size: their largest common divisor), and all forwards are equal."""
        groups = [n for n in self.rows() if n]
        shares = [n // world_size for n in groups]
        common = math.gcd(*shares)
        micro = min(self.micro_batch_size or common, common)
        if any(n % world_size for n in groups) or micro == 0 or common % micro:
            rows = f" ({groups[0]} long + {groups[1]} short rows)" if len(groups) > 1 else ""
            raise ValueError(f"batch_size {self.batch_size}{rows} does not split into {world_size} process(es) × "
                             f"micro-batches of {self.micro_batch_size or common}")
        return micro, sum(shares) // micro

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        if self.schedule == "linear":
            return self.lr * (1.0 - progress)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_at(step: int, tokens: np.ndarray, cfg: TrainConfig, tokenizer) -> list[torch.Tensor]:
    """Batch `step` is a pure function of (seed, step), so a resumed run sees exactly the same data: the long rows
    (seq_len + 1 tokens, passkey examples among them), then with a mixed context window the short rows
    (short_len + 1 tokens) — one tensor per length. Sampling 'chunks' draws the long rows from training_chunks in
    run order and the short rows as 'blocks' does."""
    rng = np.random.default_rng([cfg.seed, step])
    n_long, n_short = cfg.rows()
    n_passkey = round(n_long * cfg.passkey_fraction)
    if cfg.sampling == "chunks":
        long = _chunk_rows(training_chunks(tokens, cfg, tokenizer), step, cfg)
    else:
        long = _windows(tokens, cfg.seq_len, n_long - n_passkey, cfg.sampling, rng)
    long += [passkey_training_example(tokenizer, cfg.seq_len + 1, rng) for _ in range(n_passkey)]
    groups = [long]
    if n_short:  # drawn last, so the batches of a run without short rows stay as they were
        short_sampling = "blocks" if cfg.sampling == "chunks" else cfg.sampling
        groups.append(_windows(tokens, cfg.short_len, n_short, short_sampling, rng))
    return [torch.from_numpy(np.stack(rows)) for rows in groups]


def _windows(tokens: np.ndarray, length: int, n: int, sampling: str, rng) -> list[np.ndarray]:
    """`n` windows of length + 1 tokens: at any offset, or whole `length` blocks."""
    if sampling == "blocks":
        starts = length * rng.integers(0, (len(tokens) - 1) // length, n)
    else:
        starts = rng.integers(0, len(tokens) - length - 1, n)
    return [tokens[s : s + length + 1].astype(np.int64) for s in starts]


def training_chunks(tokens: np.ndarray, cfg: TrainConfig, tokenizer) -> Chunks:
    """The store cut into chunks of seq_len + 1 tokens, bookended with the tokenizer's BOS and EOS."""
    return Chunks(tokens, cfg.seq_len + 1, tokenizer.bos_id, tokenizer.eos_id)


def chunk_supply_error(tokens: np.ndarray, cfg: TrainConfig, tokenizer) -> str | None:
    """Why the store cannot feed a whole run of sampling 'chunks' (steps × chunk rows within `epochs`), or None.
    Checked before the first step, so that a run never stops midway for want of data."""
    return training_chunks(tokens, cfg, tokenizer).supply_error(cfg.steps * cfg.chunk_rows(), cfg.epochs)


def _chunk_rows(chunks: Chunks, step: int, cfg: TrainConfig) -> list[np.ndarray]:
    n = cfg.chunk_rows()
    error = chunks.supply_error((step + 1) * n, cfg.epochs)
    if error:
        raise ValueError(f"step {step + 1}: {error}")
    return [chunks.row(step * n + i, cfg.seed) for i in range(n)]


class TorchBackend:
    """One process, plain torch: AdamW without weight decay on biases and norms, autocast when bf16."""

    rank, world_size = 0, 1
    data_rank, data_ranks = 0, 1  # which rows of a batch this process takes, out of how many shares

    def __init__(self, model, cfg: TrainConfig, precision: str = "fp32"):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.cfg = model.to(self.device), cfg
        self.optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        self.dtype = torch.bfloat16 if precision == "bf16" else None

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            return next_token_nll(self.model, ids.to(self.device)).mean()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def backward(self, loss: torch.Tensor, share: float) -> None:
        """Accumulate the gradient of `loss`, a micro-batch's mean, weighted by its `share` of this step's rows."""
        (loss * share).backward()

    def step(self) -> float:
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm.item()

    def mean(self, value: float) -> float:
        return value

    def barrier(self) -> None:
        pass

    def save(self, folder: Path) -> None:
        save_model(self.model, str(folder / "model.safetensors"))
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")

    def load(self, folder: Path) -> None:
        load_model(self.model, str(folder / "model.safetensors"))
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))

    @contextmanager
    def full_model(self):
        yield self.model


def parameter_groups(model, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(model, tokens: np.ndarray, tokenizer, cfg: TrainConfig, work_dir: str | Path, loss_csv: str | Path,
          backend=None, finish=None, on_checkpoint=None):
    """Train `model` for cfg.steps on windows of `tokens`; resumes from `work_dir` if a checkpoint is there.

    `backend` runs the optimisation (default: TorchBackend; DeepSpeedBackend for ZeRO and several processes);
    `finish(model)` runs on rank 0 with every parameter gathered, e.g. to save the trained model;
    `on_checkpoint(step, model)` runs on rank 0 after each checkpoint (with the torch backend), e.g. to probe a
    learning curve; the model is in eval mode while it runs.
    """
    work_dir, loss_csv = Path(work_dir), Path(loss_csv)
    model.train()
    backend = backend or TorchBackend(model, cfg)
    micro, _ = cfg.accumulation(backend.data_ranks)
    start = _resume(backend, work_dir, loss_csv, cfg)
    log = _open_log(loss_csv, resumed=start > 0) if backend.rank == 0 else None
    bar = tqdm(total=cfg.steps, initial=start, desc="train", file=sys.stderr, mininterval=5, disable=backend.rank > 0)
    t0 = time.time()
    for step in range(start, cfg.steps):
        lr = cfg.lr_at(step)
        backend.set_lr(lr)
        # This process's share of the long rows and of the short rows; rows of different lengths cannot share a
        # tensor, so each length runs as its own micro-batches.
        groups = [rows[backend.data_rank :: backend.data_ranks] for rows in batch_at(step, tokens, cfg, tokenizer)]
        n_rows = sum(len(rows) for rows in groups)
        total = 0.0
        for ids in (ids for rows in groups for ids in rows.split(micro)):
            loss = backend.loss(ids)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {step}; last good checkpoint kept in {work_dir}"
                )
            share = len(ids) / n_rows  # the step's loss is the mean over rows of each row's mean token loss
            backend.backward(loss, share)
            total += loss.item() * share
        grad_norm = backend.step()
        loss_value = backend.mean(total)
        if log:
            log.writerow([step + 1, f"{loss_value:.5f}", f"{lr:.6g}", f"{grad_norm:.4f}", f"{time.time() - t0:.1f}"])
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", refresh=False)
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            _save_checkpoint(backend, step + 1, work_dir, cfg)
            if on_checkpoint is not None and backend.rank == 0:
                model.eval()
                on_checkpoint(step + 1, model)
                model.train()
    bar.close()
    model.eval()
    with backend.full_model() as full:
        if finish is not None and backend.rank == 0:
            finish(full)
    backend.barrier()
    return model


# ---------------------------------------------------------------------------------------------
# Checkpoints: work_dir/step-NNNNNN/{model.safetensors, optimizer.pt, state.json} and a `latest` pointer
# replaced atomically, so a kill at any moment leaves the previous checkpoint intact.

LOG_HEADER = ["step", "loss", "lr", "grad_norm", "seconds"]


def _save_checkpoint(backend, step: int, work_dir: Path, cfg: TrainConfig) -> None:
    target = work_dir / f"step-{step:06d}"
    if backend.rank == 0:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
    backend.barrier()
    backend.save(target)  # collective under DeepSpeed: every rank writes its shard
    backend.barrier()
    if backend.rank == 0:
        (target / "state.json").write_text(json.dumps({"step": step, "config": asdict(cfg)}))
        tmp = work_dir / "latest.tmp"
        tmp.write_text(target.name)
        os.replace(tmp, work_dir / "latest")
        for old in work_dir.glob("step-*"):
            if old != target:
                shutil.rmtree(old)
    backend.barrier()


def _resume(backend, work_dir: Path, loss_csv: Path, cfg: TrainConfig) -> int:
    pointer = work_dir / "latest"
    if not pointer.is_file():
        return 0
    ckpt = work_dir / pointer.read_text().strip()
    state = json.loads((ckpt / "state.json").read_text())
    if state["config"] != json.loads(json.dumps(asdict(cfg))):
        raise ValueError(f"checkpoint in {ckpt} was made with other training settings; delete {work_dir} to restart")
    backend.load(ckpt)
    step = state["step"]
    if backend.rank == 0 and loss_csv.is_file():  # drop log rows written after the checkpoint: they will be redone
        with loss_csv.open() as f:
            rows = [r for r in csv.reader(f)][1:]
        with loss_csv.open("w", newline="") as f:
            csv.writer(f).writerows([LOG_HEADER, *(r for r in rows if int(r[0]) <= step)])
    logger.info("resuming from %s (step %d)", ckpt, step)
    return step


class _LineWriter:
    """csv.writer that flushes every row, so the loss log can be followed while training runs."""

    def __init__(self, path: Path, append: bool):
        self._file = path.open("a" if append else "w", newline="")
        self._csv = csv.writer(self._file)
        if not append:
            self.writerow(LOG_HEADER)

    def writerow(self, row) -> None:
        self._csv.writerow(row)
        self._file.flush()


def _open_log(path: Path, resumed: bool) -> _LineWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _LineWriter(path, append=resumed and path.is_file())

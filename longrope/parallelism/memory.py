"""Per-GPU memory of each stage of a config, and the smallest sequence-parallel degree that fits (the planner).

No torch import: the workflow's config checks use `sequence_split_error` while Snakemake parses.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


def sequence_split_error(heads: int, kv_heads: int, n: int) -> str | None:
    """Why `n` ranks cannot share a sequence of a model with these heads (Ulysses gives each rank heads / n query
    heads; KV heads are split too, or replicated when there are fewer than n), or None."""
    if heads % n:
        return f"{n} ranks cannot split the model's {heads} attention heads evenly"
    if kv_heads % n and n % kv_heads:
        return f"{n} ranks cannot split or replicate the model's {kv_heads} KV heads evenly"
    return None


GIB = 2**30


@dataclass(frozen=True)
class Architecture:
    """The shapes of a Llama-like decoder (Llama 2, Mistral, Phi-3, the tiny default) that memory depends on."""
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, c: dict) -> Architecture:
        """From a Hugging Face config.json."""
        heads = c["num_attention_heads"]
        return cls(hidden=c["hidden_size"], layers=c["num_hidden_layers"], heads=heads,
                   kv_heads=c.get("num_key_value_heads") or heads,
                   head_dim=c.get("head_dim") or c["hidden_size"] // heads, intermediate=c["intermediate_size"],
                   vocab=c["vocab_size"], tied=bool(c.get("tie_word_embeddings", False)))

    @property
    def layer_parameters(self) -> int:
        """One decoder layer's: the attention projections, the gated MLP and the two norms."""
        h, attention = self.hidden, self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        return h * attention + 3 * h * self.intermediate + 2 * h

    @property
    def parameters(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * self.layer_parameters + self.hidden


@dataclass(frozen=True)
class Job:
    """What one GPU (rank) of a job does. `score`: forwards without gradients (search fitness, perplexity);
    `train`: a fine-tune under ZeRO `zero` over `ranks` ranks."""
    kind: str                    # score | train
    length: int                  # tokens of one sequence
    sequence: int = 1            # ranks sharing it
    value_bytes: int = 2         # bf16 weights and activations; 4 for fp32
    rows: int = 1                # sequences per forward (micro-batch)
    ranks: int = 1               # ranks of the job (ZeRO partitions over all of them)
    zero: int = 0
    offload_params: bool = False
    offload_optimizer: bool = False
    checkpointing: bool = False
    loss_chunk: int = 4096       # tokens whose logits the loss holds at once (longrope.model.token_nll)
    tile_mlp: int | None = None  # tokens per MLP tile (longrope.patching), None = the whole shard at once


def memory(a: Architecture, job: Job) -> dict[str, float]:
    """Per-GPU bytes by part, and their total. Counted from the tensors each step keeps alive (not fitted), for
    sdpa/flash attention (no T×T matrix) and the shard S = T/N of each sequence:
    * weights: all of them when scoring or under ZeRO 0-2; a 1/ranks share under ZeRO-3 (plus two layers being
      gathered), none with parameter offload beyond those two layers;
    * gradients (values of the weights' dtype) and AdamW states (fp32 master + two moments, 12 bytes a weight with
      bf16, 8 with fp32), sharded by the ZeRO stage, none on the GPU when the optimizer is offloaded;
    * activations kept for the backward: each layer's input with gradient checkpointing, else everything a layer
      saves; plus one layer recomputed in the backward;
    * the workspace of one layer: attention (q, k, v, their rotated copies and the two all-to-all layouts, the
      output) or the MLP (input, output, and gate, up, activation, product of one tile), whichever is larger; a
      tiled MLP keeps only its input and output for the backward;
    * logits: a loss chunk's (logits, their fp32 copy, log-softmax and, when training, its gradient); the loss is
      tiled, so the backward recomputes each chunk rather than keeping every position's log-softmax.
    """
    b, shard = job.value_bytes, job.rows * -(-job.length // job.sequence)
    h, i, d = a.hidden, a.intermediate, a.head_dim
    qkv = (a.heads + 2 * a.kv_heads) * d
    attention = shard * (2 * h + 3 * qkv + (a.heads + a.kv_heads) * d + 2 * a.heads * d) * b
    mlp_tile = min(job.tile_mlp or shard, shard)
    mlp = (shard * 3 * h + mlp_tile * 3 * i) * b
    chunk_logits = min(job.loss_chunk, shard) * a.vocab
    parts = {"weights": a.parameters * b, "gradients": 0.0, "optimizer": 0.0, "activations": 0.0,
             "attention": attention, "mlp": mlp, "logits": chunk_logits * (b + 4 + 4)}
    if job.kind == "train":
        layer_weights = a.layer_parameters * b
        if job.zero == 3:
            parts["weights"] = 2 * layer_weights + (0 if job.offload_params else a.parameters * b / job.ranks)
        gradient_share = job.ranks if job.zero >= 2 else 1
        optimizer_share = job.ranks if job.zero >= 1 else 1
        if not job.offload_optimizer:
            parts["gradients"] = a.parameters * b / gradient_share
            parts["optimizer"] = a.parameters * (12 if b == 2 else 8) / optimizer_share
        # counted with autograd's saved-tensor hooks on the tiny model: the two norms' inputs and outputs, attention's
        # rotated q, k, v and its output, and (untiled) the MLP's gate, up, activation and product
        saved_per_layer = (6 * h + qkv + (0 if job.tile_mlp else 4 * i)) * b
        per_layer = h * b if job.checkpointing else saved_per_layer
        parts["activations"] = shard * (a.layers * per_layer + (saved_per_layer if job.checkpointing else 0))
        parts["logits"] += chunk_logits * 4  # the recomputed chunk's gradient
    parts["total"] = (parts["weights"] + parts["gradients"] + parts["optimizer"] + parts["activations"]
                      + max(parts["attention"], parts["mlp"]) + parts["logits"])
    return parts


def smallest_sequence(a: Architecture, job: Job, budget: float, largest: int) -> int | None:
    """The smallest sequence-parallel degree up to `largest` whose per-GPU total fits `budget` bytes, or None."""
    for n in range(1, largest + 1):
        if sequence_split_error(a.heads, a.kv_heads, n) is None and \
                memory(a, replace(job, sequence=n))["total"] <= budget:
            return n
    return None

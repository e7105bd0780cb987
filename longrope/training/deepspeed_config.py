"""DeepSpeed JSON configs: parsed up front (a broken file fails before any work) and completed from our settings.

The JSON names the engine's choices (ZeRO stage, offload, bf16); the values a TrainConfig owns (batch geometry,
clipping, AdamW settings) are filled in. A JSON value other than "auto" that disagrees with them is an error.
No torch import here, so the workflow can check configs while it parses.
"""
from __future__ import annotations

import json
from pathlib import Path


def load_deepspeed_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config {path} does not exist")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"DeepSpeed config {path} must hold a JSON object, got {type(config).__name__}")
    return config


def fill_deepspeed_config(config: dict, cfg, data_ranks: int, precision: str, sequence: int = 1) -> dict:
    """`config` completed from TrainConfig `cfg` for `data_ranks` shares of each batch, each taken by `sequence`
    processes, and `precision` (fp32 or bf16)."""
    micro, accumulation = cfg.accumulation(data_ranks)
    owned = {
        "train_batch_size": cfg.batch_size * sequence,  # DeepSpeed counts a row once for each rank that holds it
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": cfg.grad_clip,
    }
    filled = json.loads(json.dumps(config))
    for key, value in owned.items():
        _fill(filled, key, value, key)
    _fill(filled.setdefault("bf16", {}), "enabled", precision == "bf16", "bf16.enabled")
    if "optimizer" in filled:  # DeepSpeed builds it (e.g. its CPU Adam for offload); our settings go in
        params = filled["optimizer"].setdefault("params", {})
        for key, value in {"lr": cfg.lr, "betas": list(cfg.betas), "weight_decay": cfg.weight_decay}.items():
            _fill(params, key, value, f"optimizer.params.{key}")
    return filled


def _fill(section: dict, key: str, value, name: str) -> None:
    given = section.get(key, "auto")
    if given != "auto" and given != value:
        raise ValueError(f"DeepSpeed config sets {name} = {given!r} but the training settings give {value!r}; "
                         f'remove it or write "auto"')
    section[key] = value

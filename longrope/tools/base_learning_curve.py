"""The embedded base's learning curve: retrieval at L0 against pretraining steps (not part of the workflow).

Trains the tiny Llama of a config's `pretrain` block, with `--set` overrides, on the token stores a run of that
config made, and at every checkpoint scores, with plain RoPE: passkey at L0 and at 4·L0 (the same seeded keys and
depths at every step) and held-out perplexity at L0 and 8·L0 (the same windows). What a shipped base must reach:
passkey at L0 ≥ 90 % with a Wilson lower bound ≥ 0.8, ≤ 10 % at 4·L0, ppl(8·L0) / ppl(L0) ≥ 2.

    python -m longrope.tools.base_learning_curve --run results-dir --set train.steps=3000 train.passkey_fraction=0.3 --out curve/a

Rerunning the same command resumes from the last checkpoint in --out.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import load_tokens
from longrope.data.windows import sample_windows
from longrope.evaluation.perplexity import perplexity
from longrope.evaluation.retrieval import passkey_accuracy
from longrope.evaluation.stats import wilson_interval
from longrope.model import tiny_llama
from longrope.plan import Plan
from longrope.training.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]
COLUMNS = ["step", "train_loss", "passkey_l0", "passkey_l0_lo", "passkey_l0_hi", "passkey_4l0", "passkey_4l0_lo",
           "passkey_4l0_hi", "ppl_l0", "ppl_8l0", "ppl_ratio", "seconds"]


def recipe(config: dict, overrides: list[str]) -> dict:
    """The config's pretrain block with `key.sub=value` overrides (values read as YAML)."""
    block = yaml.safe_load(yaml.safe_dump(config["pretrain"]))
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = block
        for name in parents:
            if name not in node:
                raise SystemExit(f"--set {item}: pretrain has no '{name}'")
            node = node[name]
        if leaf not in node:
            raise SystemExit(f"--set {item}: pretrain.{'.'.join(parents)} has no '{leaf}'")
        node[leaf] = yaml.safe_load(value)
    return block


@torch.no_grad()
def probe(model, tokenizer, heldout, l0: int, trials: int, windows: int) -> dict:
    row = {}
    for name, length in (("passkey_l0", l0), ("passkey_4l0", 4 * l0)):
        cells = passkey_accuracy(model, tokenizer, length, DEPTHS, trials, seed=0, with_task=False)
        hits = sum(round(c["accuracy"] * c["trials"]) for c in cells)
        n = trials * len(DEPTHS)
        row[name], (row[f"{name}_lo"], row[f"{name}_hi"]) = hits / n, wilson_interval(hits, n)
    for name, length in (("ppl_l0", l0), ("ppl_8l0", 8 * l0)):  # the same seeded windows at every checkpoint
        row[name] = perplexity(model, sample_windows(heldout, length, windows, seed=0)).ppl
    row["ppl_ratio"] = row["ppl_8l0"] / row["ppl_l0"]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=ROOT / "config" / "config.yaml", type=Path)
    parser.add_argument("--run", required=True, type=Path, help="a run's directory: its results/data (tokenizer, stores)")
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", help="pretrain overrides, key.sub=value")
    parser.add_argument("--trials", default=12, type=int, help="passkey keys per depth (5 depths)")
    parser.add_argument("--windows", default=8, type=int, help="held-out windows per perplexity")
    parser.add_argument("--threads", default=2, type=int)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    config = yaml.safe_load(args.config.read_text())
    block = recipe(config, args.overrides)
    l0 = config["base_model"]["original_length"]
    plan = Plan.load(config, ROOT)
    train_store, heldout_store = (args.run / plan.store(role) for role in ("train", "evaluation"))
    tokenizer = load_tokenizer(args.run / "results" / "data" / "tokenizer")
    heldout = load_tokens(heldout_store)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recipe.yaml").write_text(yaml.safe_dump({"pretrain": block, "l0": l0}, sort_keys=False))

    cfg = TrainConfig(seq_len=l0, seed=block["seed"], **block["train"])
    model = tiny_llama(vocab_size=tokenizer.vocab_size, original_length=l0, seed=block["seed"], **block["model"])
    curve, loss_csv = args.out / "curve.csv", args.out / "loss.csv"
    done = {int(r["step"]) for r in csv.DictReader(curve.open())} if curve.is_file() else set()
    if not curve.is_file():
        curve.write_text(",".join(COLUMNS) + "\n")
    t0 = time.time()

    def record(step: int, trained) -> None:
        if step in done:
            return
        losses = [float(r["loss"]) for r in csv.DictReader(loss_csv.open()) if int(r["step"]) <= step]
        row = {"step": step, "train_loss": np.mean(losses[-20:]), **probe(trained, tokenizer, heldout, l0,
                                                                           args.trials, args.windows),
               "seconds": round(time.time() - t0, 1)}
        with curve.open("a") as f:
            f.write(",".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) + "\n")
        print(", ".join(f"{c} {row[c]:.3g}" for c in COLUMNS), flush=True)

    train(model, load_tokens(train_store), tokenizer, cfg, args.out / "work", loss_csv, on_checkpoint=record)
    record(cfg.steps, model)
    model.save_pretrained(args.out / "model")
    tokenizer.save(args.out / "model")


if __name__ == "__main__":
    main()

"""Copy a base model trained by the workflow's `pretrain_base` rule into the repository's shipped folder
(default `data/base/`) with its manifest: the recipe and its digest, commit, seed, steps, final loss, the CPU and
seconds it trained, the command that reproduces it and the SHA-256 of every file.

    python -m longrope.tools.ship_base --run /tmp/shipbase        # a clone where that rule ran
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import yaml

from longrope.shipped import MANIFEST, PRETRAIN_LOSS, REPRODUCE, digest, file_sha256, recipe
from longrope.tools.provenance import commit, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the workflow folder where pretrain_base ran")
    parser.add_argument("--out", type=Path, default=Path("data/base"))
    args = parser.parse_args()
    config = yaml.safe_load((args.run / "config" / "config.yaml").read_text())
    model, loss = args.run / "results/base/model", args.run / "results/base/pretrain_loss.csv"
    seconds = float(next(csv.DictReader((args.run / "benchmarks/pretrain_base.tsv").open(), delimiter="\t"))["s"])
    rows = list(csv.DictReader(loss.open()))
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(model, args.out, ignore=shutil.ignore_patterns(".snakemake_timestamp"))
    shutil.copy(loss, args.out / PRETRAIN_LOSS)
    spec = recipe(config)
    manifest = {
        "recipe": spec, "recipe_sha256": digest(spec), "commit": commit(args.run), "seed": spec["pretrain"]["seed"],
        "steps": int(rows[-1]["step"]), "final_loss": float(rows[-1]["loss"]), "cpu": cpu(),
        "threads": config["pretrain"]["threads"], "train_seconds": round(seconds, 2), "command": REPRODUCE,
        "files": {p.name: file_sha256(p) for p in sorted(args.out.iterdir()) if p.is_file() and p.name != MANIFEST},
    }
    (args.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{args.out}: {len(manifest['files'])} files, step {manifest['steps']}, loss {manifest['final_loss']:.4f}")


if __name__ == "__main__":
    main()

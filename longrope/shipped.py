"""The base model shipped with the repository (`data/base/`): the embedded default starts from it, so a first run
does not pretrain and every machine begins from the same weights.

Its `manifest.json` names the recipe (a digest of the config's `pretrain` block and L0 that the workflow's own
`pretrain_base` rule trained it with), the commit, seed, steps, final loss, the CPU and seconds it took, the
command that reproduces it and the SHA-256 of every file beside it. `longrope.tools.ship_base` writes it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"
PRETRAIN_LOSS = "pretrain_loss.csv"  # the training loss by step, beside the weights
REPRODUCE = "snakemake --cores 2 results/base/model --config base_model='{path: null}'"


def recipe(config: dict) -> dict:
    """What decides the shipped weights: the `pretrain` block (less its thread count, which changes speed, not
    the arithmetic's order on one machine) and the original length L0 it trains at."""
    block = {key: value for key, value in config["pretrain"].items() if key != "threads"}
    return {"pretrain": block, "l0": config["base_model"]["original_length"],
            "tokenizer": config["data"]["tokenizer"]}


def digest(value: dict) -> str:
    """SHA-256 of a JSON value in canonical form (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def read_manifest(folder: str | Path) -> dict:
    return json.loads(Path(folder, MANIFEST).read_text())


def mismatched_files(folder: str | Path) -> list[str]:
    """The files the manifest lists whose content differs from their SHA-256 there, or that are missing, and the
    files in the folder the manifest does not list."""
    folder = Path(folder)
    listed = read_manifest(folder)["files"]
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST}
    wrong = [name for name, sha in listed.items() if name not in present or file_sha256(folder / name) != sha]
    return sorted(wrong + sorted(present - set(listed)))

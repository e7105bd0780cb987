"""One-off calibration of the embedded default's base model (not part of the workflow).

For each pretraining seed, run the real workflow on a copy of the config that pretrains its base model and
differs only in pretrain.seed (no export; evaluation trimmed to L0…16·L0 and the 8× stage), then print plain RoPE's blow-up
ppl(8·L0) / ppl(L0) and the baselines at s = 8 side by side.

    .venv/bin/python -m longrope.tools.calibrate_base --seeds 0 1 2 --out calibration
"""
import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from longrope.evaluation.report import scaling_label

ROOT = Path(__file__).resolve().parents[2]  # the repository: its Snakefile and config/


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=ROOT / "config" / "config.yaml", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=Path("calibration"), type=Path)
    parser.add_argument("--cores", default=2, type=int)
    args = parser.parse_args()

    base = yaml.safe_load(args.config.read_text())
    l0 = base["base_model"]["original_length"]
    tables = []
    for seed in args.seeds:
        run_dir = (args.out / f"seed-{seed}").resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        config = {**base, "stages": {"128k": {"scale": 8}},
                  "evaluation": {**base["evaluation"], "lengths": [l0 * k for k in (1, 2, 4, 8, 16)]}}
        config["pretrain"] = {**base["pretrain"], "seed": seed}
        config["base_model"] = {**base["base_model"], "path": None}  # pretrain here rather than use data/base
        config.pop("export", None)  # its stage is not among the one stage kept
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
                        "--cores", str(args.cores), "--configfile", str(run_dir / "config.yaml"),
                        "--directory", str(run_dir), "--quiet"], check=True)
        tidy = pd.read_csv(run_dir / "results" / "tables" / "perplexity.csv")
        tables.append(tidy.assign(seed=seed))

    tidy = pd.concat(tables)
    tidy["row"] = [scaling_label(m, s) for m, s in zip(tidy["method"], tidy["scale"])]
    wide = tidy.pivot_table(index=["seed", "row"], columns="length", values="ppl").round(2)
    print(wide.to_string())
    none = tidy[tidy["method"] == "none"].pivot_table(index="seed", columns="length", values="ppl")
    print("\nplain RoPE blow-up ppl(8·L0)/ppl(L0) per seed:", (none[8 * l0] / none[l0]).round(2).to_dict())
    wide.to_csv(args.out / "calibration.csv")


if __name__ == "__main__":
    main()

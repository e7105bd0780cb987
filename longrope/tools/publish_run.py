"""Publish a finished run of the workflow into docs/<name>/ and render every include block of the README and the
docs pages from the committed files (longrope.docs_blocks), so that no quoted figure outlives the run it came from.

    python -m longrope.tools.publish_run --run /tmp/fresh --name embedded_default \\
        --install-seconds 90 --workflow-seconds 850      # a fresh clone where README command 1 ran
    python -m longrope.tools.publish_run --run /tmp/t2 --tests-seconds 700 --install-seconds 95 --passed 480
                                                         # README command 2 (there, no workflow run)
    python -m longrope.tools.publish_run                 # render the blocks again (after editing a page)

The run page (run.md) names the CPU, the date, the commit, the install and workflow seconds and how many
pretrain_base jobs ran; job_times.csv has every job's seconds and peak memory from the run's benchmarks/.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import shutil
from pathlib import Path

from longrope.docs_blocks import included, render
from longrope.tools.provenance import commit, cores, cpu

TABLES = ["claims", "table1_perplexity", "search_vs_baselines", "table5_extended_models", "finetune_effect",
          "table10_short_recovery", "table11_ablation", "passkey_accuracy", "needle_scores", "engine_parity"]
PLOTS = ["perplexity", "passkey_heatmap", "factors", "pretrain_loss"]
TIDY = ["results/tables/claims.csv", "results/tables/perplexity.csv", "results/tables/passkey.csv",
        "results/tables/engine_parity.csv", "results/export/stock_check.csv"]


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def job_times(run: Path) -> list[dict]:
    rows = []
    for tsv in sorted((run / "benchmarks").rglob("*.tsv")):
        for row in csv.DictReader(tsv.open(), delimiter="\t"):
            rows.append({"job": str(tsv.relative_to(run / "benchmarks").with_suffix("")), "seconds": row["s"],
                         "max_rss_mb": row["max_rss"], "cpu_seconds": row["cpu_time"]})
    return rows


def timing_table(rows: list[tuple[str, str]]) -> str:
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:,.0f} s)"


def publish_run(run: Path, out: Path, install: float, workflow: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        shutil.copy(run / "results/tables" / f"{name}.md", out / f"{name}.md")
    for path in TIDY:
        shutil.copy(run / path, out / Path(path).name)
    for name in PLOTS:
        for suffix in (".png", ".svg"):
            if (run / "results/plots" / f"{name}{suffix}").is_file():
                shutil.copy(run / "results/plots" / f"{name}{suffix}", out / f"{name}{suffix}")
    jobs = job_times(run)
    with open(out / "job_times.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(jobs[0]))
        writer.writeheader()
        writer.writerows(jobs)
    pretrained = sum(j["job"] == "pretrain_base" for j in jobs)
    (out / "run.md").write_text(timing_table([
        ("CPU", f"{cpu()}, {cores()} cores"), ("date", datetime.date.today().isoformat()),
        ("commit", commit(run, short=True)),
        ("install (pip, cache warm)", minutes(install)), ("workflow (`snakemake --cores 2`)", minutes(workflow)),
        ("README command 1 in all", minutes(install + workflow)), ("jobs", str(len(jobs))),
        ("pretrain_base jobs", str(pretrained))]))


def publish_tests(out: Path, run: Path, install: float, tests: float, passed: int, failed: int,
                  cold: float | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = [("CPU", f"{cpu()}, {cores()} cores"), ("date", datetime.date.today().isoformat()),
            ("commit", commit(run, short=True)),
            ("install (pip, cache warm)", minutes(install)),
            ("tests (`pytest -q`)", f"{minutes(tests)}, {passed} passed" + (f", {failed} failed" if failed else "")),
            ("README command 2 in all", minutes(install + tests))]
    if cold is not None:
        rows.append(("install with llama-cpp-python built from source (cold pip cache)", minutes(cold)))
    (out / "run.md").write_text(timing_table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a workflow folder after `snakemake --cores 2`")
    parser.add_argument("--name", default="embedded_default", help="docs/<name>/ receives the run")
    parser.add_argument("--install-seconds", type=float)
    parser.add_argument("--workflow-seconds", type=float)
    parser.add_argument("--tests-seconds", type=float, help="publish a timed test run into docs/tests/")
    parser.add_argument("--passed", type=int)
    parser.add_argument("--failed", type=int, default=0)
    parser.add_argument("--cold-install-seconds", type=float, help="the same install with pip's cache cold")
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args()
    if args.run and args.tests_seconds is None:
        if args.install_seconds is None or args.workflow_seconds is None:
            parser.error("--run needs --install-seconds and --workflow-seconds (README command 1's two parts)")
        publish_run(args.run, args.root / "docs" / args.name, args.install_seconds, args.workflow_seconds)
    if args.tests_seconds is not None:
        if args.install_seconds is None or args.passed is None:
            parser.error("--tests-seconds needs --install-seconds and --passed")
        publish_tests(args.root / "docs" / "tests", args.run or args.root, args.install_seconds, args.tests_seconds,
                      args.passed, args.failed, args.cold_install_seconds)
    for page in pages(args.root):
        rendered = render(page, args.root, skip_missing=True)
        if rendered != page.read_text():
            page.write_text(rendered)
            print(f"rendered {page}")
    missing = sorted({path for page in pages(args.root) for path in included(page) if not (args.root / path).is_file()})
    if missing:
        raise SystemExit(f"include blocks name files not published yet: {', '.join(missing)}")


if __name__ == "__main__":
    main()

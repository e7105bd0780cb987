"""A harness suite's tables from every subject's per-sample scores: the suite's table (Table 8's layout, or RULER
by length with each subject's effective length), and RULER's plot or the short-task retention."""
from pathlib import Path

import pandas as pd

from longrope.evaluation.report import latex, markdown
from longrope.harness.report import plot_ruler, retention, ruler_table, suite_table
from longrope.harness.suites import Suite
from longrope.logs import to_rule_log

to_rule_log(snakemake.log[0])

p = snakemake.params
suite = Suite.from_config(p.name, p.suite)
samples = pd.concat([pd.read_csv(path) for path in snakemake.input], ignore_index=True)


def write(table: pd.DataFrame, paths: list[str]) -> None:
    csv, md, tex = paths
    table.to_csv(csv)
    Path(md).write_text(markdown(table, digits=1))
    Path(tex).write_text(latex(table, digits=1))
    print(markdown(table, digits=1))


if suite.lengths:
    table = ruler_table(samples, suite)
    write(table, snakemake.output.tables)
    plot_ruler(table, suite, p.original_length, snakemake.output.extra, p.dpi)
else:
    write(suite_table(samples, suite), snakemake.output.tables)
    write(retention(samples, suite, base="base_none"), snakemake.output.extra)

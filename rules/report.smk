localrules: tables, plot_perplexity, plot_passkey, plot_factors, plot_pretrain_loss, plot_finetune_loss

# Paper-style tables, each written as CSV, Markdown and LaTeX from the tidy results (scripts/make_tables.py).
TABLES = ["table1_perplexity", "search_vs_baselines", "table2_n_hat", "table5_extended_models", "finetune_effect",
          "table10_short_recovery", "table11_ablation", "passkey_accuracy", "needle_scores", "claims"]
PERPLEXITY_EVALUATIONS = [
    *expand("results/eval/base/{method}", method=EVAL["methods"]),
    *expand("results/eval/search/{run}", run=SEARCH_RUNS),
    *expand("results/eval/n_hat/{stage}", stage=PLAN.n_hat_stages()),
    *expand("results/eval/finetune/{stage}", stage=PLAN.finetune_stages()),
]


rule tables:
    input:
        perplexity=[f"{evaluation}.csv" for evaluation in PERPLEXITY_EVALUATIONS],
        windows=[f"{evaluation}.windows.csv" for evaluation in PERPLEXITY_EVALUATIONS],
        passkey=expand("results/eval/retrieval/{subject}.passkey.csv", subject=SUBJECTS),
        needles=expand("results/eval/retrieval/{subject}.needles.csv", subject=SUBJECTS),
    output:
        perplexity=report("results/tables/perplexity.csv", caption="../report/tidy.rst", category="Tables"),
        passkey=report("results/tables/passkey.csv", caption="../report/tidy.rst", category="Tables"),
        needles=report("results/tables/needles.csv", caption="../report/tidy.rst", category="Tables"),
        windows="results/tables/perplexity_windows.csv",
        tables=expand("results/tables/{name}.{ext}", name=TABLES, ext=["csv", "md", "tex"]),
    params:
        names=TABLES,
        original_length=L0,
        search_scales=PLAN.search_scales(),
        first_scale=next((PLAN.stages[name].scale for name in PLAN.n_hat_stages()), None),  # searched on the base
        finetuned=PLAN.finetuned(),
        bootstrap=EVAL["bootstrap"],
    log:
        "logs/tables.log",
    benchmark:
        "benchmarks/tables.tsv"
    script:
        "../scripts/make_tables.py"


rule plot_perplexity:
    input:
        tidy="results/tables/perplexity.csv",
        comparison="results/tables/search_vs_baselines.csv",
    output:
        report("results/plots/perplexity.png", caption="../report/perplexity.rst", category="Perplexity"),
        "results/plots/perplexity.svg",
    params:
        original_length=L0,
        style=PLOTS["perplexity"],
    log:
        "logs/plot_perplexity.log",
    benchmark:
        "benchmarks/plot_perplexity.tsv"
    script:
        "../scripts/plot_results.py"


rule plot_passkey:
    input:
        "results/tables/passkey.csv",
    output:
        report("results/plots/passkey_heatmap.png", caption="../report/passkey.rst", category="Retrieval"),
        "results/plots/passkey_heatmap.svg",
    params:
        original_length=L0,
        style=PLOTS["passkey"],
    log:
        "logs/plot_passkey.log",
    benchmark:
        "benchmarks/plot_passkey.tsv"
    script:
        "../scripts/plot_results.py"


rule plot_factors:
    input:
        factors=[SEARCH_RUNS[stage].factors for stage in PLAN.search_stages()],
        model=BASE_MODEL,
    output:
        report("results/plots/factors.png", caption="../report/factors.rst", category="Search"),
        "results/plots/factors.svg",
    params:
        style=PLOTS["factors"],
    log:
        "logs/plot_factors.log",
    benchmark:
        "benchmarks/plot_factors.tsv"
    script:
        "../scripts/plot_results.py"


if pretrain_loss():  # the base model's training loss: pretrained here, or shipped beside it

    rule plot_pretrain_loss:
        input:
            pretrain_loss(),
        output:
            report("results/plots/pretrain_loss.png", caption="../report/pretrain_loss.rst", category="Training"),
        log:
            "logs/plot_pretrain_loss.log",
        benchmark:
            "benchmarks/plot_pretrain_loss.tsv"
        script:
            "../scripts/plot_loss.py"

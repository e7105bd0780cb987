EVAL_PARAMS = dict(
    original_length=L0,
    lengths=EVAL["lengths"],
    max_samples=EVAL["max_samples"],
    tokens_per_length=EVAL["tokens_per_length"],
    seed=EVAL["seed"],
    attention=EVAL["attention"],
)


rule evaluate_base:
    """Perplexity of the base model by length under one baseline scaling at every stage's scale."""
    input:
        model=base_model_dir(),
        tokens="results/data/evaluation.npy",
    output:
        "results/eval/base/{method}.csv",
    params:
        model="base",
        method="{method}",
        label="{method}",
        scales=lambda w: [1.0] if w.method == "none" else stage_scales(),
        **EVAL_PARAMS,
    wildcard_constraints:
        method="|".join(EVAL["methods"]),
    threads: EVAL["threads"]
    log:
        "logs/evaluate_base/{method}.log",
    benchmark:
        "benchmarks/evaluate_base/{method}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_search:
    """Perplexity by length of the base model with a search stage's factors, no fine-tuning (paper Table 1)."""
    input:
        model=base_model_dir(),
        tokens="results/data/evaluation.npy",
        factors="results/search/{stage}/factors.json",
    output:
        "results/eval/search/{stage}.csv",
    params:
        model="base",
        label="longrope",
        **EVAL_PARAMS,
    threads: EVAL["threads"]
    log:
        "logs/evaluate_search/{stage}.log",
    benchmark:
        "benchmarks/evaluate_search/{stage}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_ppl.py"

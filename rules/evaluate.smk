EVAL_PARAMS = dict(
    mode=EVAL["mode"],
    stride=EVAL["stride"],
    document_length=EVAL["document_length"],
    max_samples=EVAL["max_samples"],
    min_samples=EVAL["min_samples"],
    tokens_per_length=EVAL["tokens_per_length"],
    seed=EVAL["seed"],
    attention=EVAL["attention"],
    dtype=DTYPE,
    sequence=sequence_ranks(),
)


rule evaluate_base:
    """Perplexity of the base model by length under one baseline scaling at every stage's scale."""
    input:
        model=base_model_dir(),
        tokens="results/data/evaluation.npy",
    output:
        perplexity="results/eval/base/{method}.csv",
        windows="results/eval/base/{method}.windows.csv",  # each window's NLL, for paired comparisons
    params:
        scalings=lambda w: [(w.method, scaling_spec(w.method, s)) for s in ([1.0] if w.method == "none" else extension_scales())],
        model="base",
        study="length",
        lengths=EVAL["lengths"],
        beyond_target=EVAL["beyond_target"],
        **EVAL_PARAMS,
    wildcard_constraints:
        method="|".join(EVAL["methods"]),
    threads: EVAL["threads"]
    resources:
        **job_resources("evaluate"),
    log:
        "logs/evaluate_base/{method}.log",
    benchmark:
        "benchmarks/evaluate_base/{method}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_search:
    """Perplexity by length with a search run's factors on the model they were searched on (no fine-tuning with
    them yet: paper Table 1 on the base model; a recovery run's scaling is the final model)."""
    input:
        model=lambda w: model_dir(search_runs()[w.run][1]["model"]),
        tokens="results/data/evaluation.npy",
        factors="results/search/{run}/factors.json",
    output:
        perplexity="results/eval/search/{run}.csv",
        windows="results/eval/search/{run}.windows.csv",  # each window's NLL, for paired comparisons
    params:
        scalings=[],
        label=lambda w: search_label(w.run),
        model=lambda w: model_label(search_runs()[w.run][1]["model"]),
        study="length",
        lengths=EVAL["lengths"],
        beyond_target=EVAL["beyond_target"],
        **EVAL_PARAMS,
    wildcard_constraints:  # not the .windows of the second output
        run="|".join(search_runs()),
    threads: EVAL["threads"]
    resources:
        **job_resources("evaluate"),
    log:
        "logs/evaluate_search/{run}.log",
    benchmark:
        "benchmarks/evaluate_search/{run}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_finetune:
    """Perplexity by length of a fine-tuned model with the scaling it was trained with, saved in its folder: the
    stage's factors, and after a mixed context window its short set of ones (paper Tables 5-7)."""
    input:
        model="results/finetune/{stage}/model",
        tokens="results/data/evaluation.npy",
    output:
        perplexity="results/eval/finetune/{stage}.csv",
        windows="results/eval/finetune/{stage}.windows.csv",  # each window's NLL, for paired comparisons
    params:
        scalings=[],
        label=lambda w: finetune_label(w.stage),
        model=lambda w: model_label(w.stage),
        study="length",
        lengths=EVAL["lengths"],
        beyond_target=EVAL["beyond_target"],
        **EVAL_PARAMS,
    wildcard_constraints:  # not the .windows of the second output
        stage="|".join(finetune_stages()),
    threads: EVAL["threads"]
    resources:
        **job_resources("evaluate"),
    log:
        "logs/evaluate_finetune/{stage}.log",
    benchmark:
        "benchmarks/evaluate_finetune/{stage}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_n_hat:
    """PI and dynamic NTK at a search stage's scale with n̂ leading positions un-interpolated (paper Table 2)."""
    input:
        model=base_model_dir(),
        tokens="results/data/evaluation.npy",
    output:
        perplexity="results/eval/n_hat/{stage}.csv",
        windows="results/eval/n_hat/{stage}.windows.csv",  # each window's NLL, for paired comparisons
    params:
        scalings=lambda w: [(m, scaling_spec(m, config["stages"][w.stage]["scale"], k))
                            for m in ("pi", "dynamic_ntk") for k in EVAL["n_hat_study"]],
        lengths=lambda w: [round(config["stages"][w.stage]["scale"] * L0)],
        model="base",
        study="n_hat",
        beyond_target=1,
        **EVAL_PARAMS,
    wildcard_constraints:  # not the .windows of the second output
        stage="|".join(n_hat_stages()),
    threads: EVAL["threads"]
    resources:
        **job_resources("evaluate"),
    log:
        "logs/evaluate_n_hat/{stage}.log",
    benchmark:
        "benchmarks/evaluate_n_hat/{stage}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_retrieval:
    """Passkey retrieval (lengths × needle depths, seeded keys) and RULER-style needle tasks (paper Fig. 4, §5)."""
    input:
        unpack(lambda w: retrieval_inputs(w.subject)),
    output:
        passkey="results/eval/retrieval/{subject}.passkey.csv",
        needles="results/eval/retrieval/{subject}.needles.csv",
    params:
        scaling=lambda w: retrieval_subjects()[w.subject].get("scaling"),
        label=lambda w: retrieval_subjects()[w.subject]["method"],
        model=lambda w: retrieval_subjects()[w.subject]["model"],
        passkey=EVAL["passkey"],
        needles=EVAL["needles"],
        beyond_target=EVAL["beyond_target"],
        attention=EVAL["attention"],
        dtype=DTYPE,
    threads: EVAL["threads"]
    resources:
        **job_resources(),
    log:
        "logs/evaluate_retrieval/{subject}.log",
    benchmark:
        "benchmarks/evaluate_retrieval/{subject}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_retrieval.py"

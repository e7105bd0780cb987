EVAL_PARAMS = dict(
    mode=EVAL["mode"],
    stride=EVAL["stride"],
    document_length=EVAL["document_length"],
    documents=EVAL["documents"],
    max_samples=EVAL["max_samples"],
    min_samples=EVAL["min_samples"],
    tokens_per_length=EVAL["tokens_per_length"],
    window_lengths=EVAL["lengths"],  # the nested windows' layout, the same for every job
    seed=EVAL["seed"],
    attention=EVAL["attention"],
    dtype=DTYPE,
    sequence=PLAN.sequence_ranks(),
)


rule evaluate_base:
    """Perplexity of the base model by length under one baseline scaling at every stage's scale."""
    input:
        model=BASE_MODEL,
        tokens=EVALUATION_TOKENS,
    output:
        perplexity="results/eval/base/{method}.csv",
        windows="results/eval/base/{method}.windows.csv",  # each window's NLL, for paired comparisons
    params:
        scalings=lambda w: PLAN.baseline_scalings(w.method),
        model="base",
        study="length",
        lengths=EVAL["lengths"],
        beyond_target=EVAL["beyond_target"],
        **EVAL_PARAMS,
    wildcard_constraints:
        method="|".join(EVAL["methods"]),
    threads: EVAL["threads"]
    resources:
        **PLAN.job_resources("evaluate"),
    log:
        "logs/evaluate_base/{method}.log",
    benchmark:
        "benchmarks/evaluate_base/{method}.tsv"
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_search:
    """Perplexity by length with a search run's factors on the model they were searched on (no fine-tuning with
    them yet: paper Table 1 on the base model; a recovery run's scaling is the final model)."""
    input:
        model=lambda w: PLAN.model_dir(SEARCH_RUNS[w.run].settings.model),
        tokens=EVALUATION_TOKENS,
        factors="results/search/{run}/factors.json",
    output:
        perplexity="results/eval/search/{run}.csv",
        windows="results/eval/search/{run}.windows.csv",  # each window's NLL, for paired comparisons
    params:
        scalings=[],
        label=lambda w: SEARCH_RUNS[w.run].label,
        model=lambda w: PLAN.model_label(SEARCH_RUNS[w.run].settings.model),
        study="length",
        lengths=EVAL["lengths"],
        beyond_target=EVAL["beyond_target"],
        **EVAL_PARAMS,
    wildcard_constraints:  # not the .windows of the second output
        run="|".join(SEARCH_RUNS),
    threads: EVAL["threads"]
    resources:
        **PLAN.job_resources("evaluate"),
    log:
        "logs/evaluate_search/{run}.log",
    benchmark:
        "benchmarks/evaluate_search/{run}.tsv"
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_finetune:
    """Perplexity by length of a fine-tuned model with the scaling it was trained with, saved in its folder: the
    stage's factors, and after a mixed context window its short set of ones (paper Tables 5-7)."""
    input:
        model="results/finetune/{stage}/model",
        tokens=EVALUATION_TOKENS,
    output:
        perplexity="results/eval/finetune/{stage}.csv",
        windows="results/eval/finetune/{stage}.windows.csv",  # each window's NLL, for paired comparisons
    params:
        scalings=[],
        label=lambda w: PLAN.stages[w.stage].finetune.label,
        model=lambda w: PLAN.model_label(w.stage),
        study="length",
        lengths=EVAL["lengths"],
        beyond_target=EVAL["beyond_target"],
        **EVAL_PARAMS,
    wildcard_constraints:  # not the .windows of the second output
        stage="|".join(PLAN.finetune_stages()),
    threads: EVAL["threads"]
    resources:
        **PLAN.job_resources("evaluate"),
    log:
        "logs/evaluate_finetune/{stage}.log",
    benchmark:
        "benchmarks/evaluate_finetune/{stage}.tsv"
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_n_hat:
    """PI and dynamic NTK at a search stage's scale with n̂ leading positions un-interpolated (paper Table 2)."""
    input:
        model=BASE_MODEL,
        tokens=EVALUATION_TOKENS,
    output:
        perplexity="results/eval/n_hat/{stage}.csv",
        windows="results/eval/n_hat/{stage}.windows.csv",  # each window's NLL, for paired comparisons
    params:
        scalings=lambda w: PLAN.n_hat_scalings(w.stage),
        lengths=lambda w: [round(PLAN.stages[w.stage].scale * L0)],
        model="base",
        study="n_hat",
        beyond_target=1,
        **EVAL_PARAMS,
    wildcard_constraints:  # not the .windows of the second output
        stage="|".join(PLAN.n_hat_stages()),
    threads: EVAL["threads"]
    resources:
        **PLAN.job_resources("evaluate"),
    log:
        "logs/evaluate_n_hat/{stage}.log",
    benchmark:
        "benchmarks/evaluate_n_hat/{stage}.tsv"
    script:
        "../scripts/evaluate_ppl.py"


rule evaluate_retrieval:
    """Passkey retrieval (lengths × needle depths, seeded keys) and RULER-style needle tasks (paper Fig. 4, §5)."""
    input:
        unpack(subject_inputs),
    output:
        passkey="results/eval/retrieval/{subject}.passkey.csv",
        needles="results/eval/retrieval/{subject}.needles.csv",
    params:
        scaling=lambda w: SUBJECTS[w.subject].scaling,
        label=lambda w: SUBJECTS[w.subject].method,
        model=lambda w: SUBJECTS[w.subject].model,
        passkey=EVAL["passkey"],
        needles=EVAL["needles"],
        beyond_target=EVAL["beyond_target"],
        attention=EVAL["attention"],
        dtype=DTYPE,
    threads: EVAL["threads"]
    resources:
        **PLAN.job_resources(),
    log:
        "logs/evaluate_retrieval/{subject}.log",
    benchmark:
        "benchmarks/evaluate_retrieval/{subject}.tsv"
    script:
        "../scripts/evaluate_retrieval.py"

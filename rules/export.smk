# The extended model for the engines people serve it with: a checkpoint stock transformers and vLLM load, a GGUF for
# llama.cpp, the same held-out windows through each of them, and the folder users ship (checkpoint + model card).
if PLAN.export:

    localrules: export, model_card

    rule export:
        """The extended model as a Hugging Face checkpoint: long and short factor sets (export.switch) and the
        attention factor in config.json, as stock transformers and vLLM read them, the exact scaling in
        longrope_scaling.json; stock transformers checked against this package's forward (export.n_hat: zero makes
        a difference an error)."""
        input:
            model=PLAN.model_dir(SEARCH_RUNS[PLAN.export.stage].settings.model),
            scaling=SEARCH_RUNS[PLAN.export.stage].factors,
            tokenizer=TOKENIZER,
        output:
            model=directory("results/export/checkpoint"),
            check="results/export/stock_check.csv",
        params:
            attention=EVAL["attention"],
            dtype=DTYPE,
            check_lengths=PLAN.check_lengths(),
            switch=PLAN.export.switch,
            n_hat=PLAN.export.n_hat,
        threads: EVAL["threads"]
        log:
            "logs/export.log",
        benchmark:
            "benchmarks/export.tsv"
        script:
            "../scripts/export_model.py"

    rule model_card:
        """results/export/model: the checkpoint with README.md, its model card (base model, corpora, the factors'
        provenance, the switch and n̂ policies, what each engine does with the two factor sets, the parity)."""
        input:
            model="results/export/checkpoint",
            check="results/export/stock_check.csv",
            factors=[SEARCH_RUNS[name].factors for name in PLAN.exported_stages()],
            gguf=["results/export/model.gguf"] if PLAN.export.gguf else [],
            parity=["results/tables/engine_parity.md"] if PLAN.export.parity else [],
        output:
            model=directory("results/export/model"),
        params:
            provenance=PLAN.export_provenance(),
            switch=PLAN.export.switch,
            n_hat=PLAN.export.n_hat,
        log:
            "logs/model_card.log",
        benchmark:
            "benchmarks/model_card.tsv"
        script:
            "../scripts/model_card.py"


if PLAN.export and PLAN.export.gguf:

    localrules: export_gguf

    rule export_gguf:
        """The exported model as one GGUF file for llama.cpp: Llama tensors, tokenizer, and the LongRoPE factor sets,
        attention factor, switch length and extended context under llama.cpp's keys (longrope/export/gguf.py)."""
        input:
            model="results/export/checkpoint",
        output:
            gguf="results/export/model.gguf",
        params:
            dtype=PLAN.export.gguf.dtype,
        log:
            "logs/export_gguf.log",
        benchmark:
            "benchmarks/export_gguf.tsv"
        script:
            "../scripts/export_gguf.py"


if PLAN.export and PLAN.export.parity:

    rule engine_parity:
        """The exported model on the same held-out windows through stock transformers, this package's loader and,
        with a GGUF, llama.cpp for each KV cache type (longrope/export/parity.py; llama.cpp needs the `llama` extra).
        Fails when it compared no window or an engine differs by more than export.parity.tolerance."""
        input:
            model="results/export/checkpoint",
            gguf=["results/export/model.gguf"] if PLAN.export.gguf else [],
            tokens=EVALUATION_TOKENS,
        output:
            table=report("results/tables/engine_parity.csv", caption="../report/engine_parity.rst", category="Export"),
            markdown="results/tables/engine_parity.md",
        params:
            lengths=list(PLAN.export.parity.lengths),
            windows=PLAN.export.parity.windows,
            kv_cache=list(PLAN.export.parity.kv_cache),
            tolerance=PLAN.export.parity.tolerance,
            seed=EVAL["seed"],
        threads: PLAN.export.parity.threads
        log:
            "logs/engine_parity.log",
        benchmark:
            "benchmarks/engine_parity.tsv"
        script:
            "../scripts/engine_parity.py"

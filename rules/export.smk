# The extended model for the engines people serve it with: a stock-transformers checkpoint (vLLM's keys
# included), a GGUF for llama.cpp, and the same held-out windows through each of them.
if PLAN.export:

    localrules: export

    rule export:
        """The extended model as a Hugging Face checkpoint: long and short factor sets (export.switch) and the
        attention factor in config.json, as stock transformers and vLLM read them, the exact scaling with n̂ in
        longrope_scaling.json."""
        input:
            model=PLAN.model_dir(SEARCH_RUNS[PLAN.export.stage].settings.model),
            scaling=SEARCH_RUNS[PLAN.export.stage].factors,
            tokenizer=TOKENIZER,
        output:
            model=directory("results/export/model"),
            check="results/export/stock_check.csv",
        params:
            attention=EVAL["attention"],
            dtype=DTYPE,
            check_lengths=list(PLAN.export.check_lengths),
            switch=PLAN.export.switch,
        threads: EVAL["threads"]
        log:
            "logs/export.log",
        benchmark:
            "benchmarks/export.tsv"
        conda:
            ENV
        script:
            "../scripts/export_model.py"


if PLAN.export and PLAN.export.gguf:

    localrules: export_gguf

    rule export_gguf:
        """The exported model as one GGUF file for llama.cpp: Llama tensors, tokenizer, and the LongRoPE factor sets,
        attention factor, switch length and extended context under llama.cpp's keys (longrope/export/gguf.py)."""
        input:
            model="results/export/model",
        output:
            gguf="results/export/model.gguf",
        params:
            dtype=PLAN.export.gguf.dtype,
            n_hat=PLAN.export.gguf.n_hat,
        log:
            "logs/export_gguf.log",
        benchmark:
            "benchmarks/export_gguf.tsv"
        conda:
            ENV
        script:
            "../scripts/export_gguf.py"


if PLAN.export and PLAN.export.parity:

    rule engine_parity:
        """The exported model on the same held-out windows through stock transformers, this package's loader and,
        with a GGUF, llama.cpp for each KV cache type (longrope/export/parity.py; llama.cpp needs the `llama` extra)."""
        input:
            model="results/export/model",
            gguf=["results/export/model.gguf"] if PLAN.export.gguf else [],
            tokens=EVALUATION_TOKENS,
        output:
            table=report("results/tables/engine_parity.csv", caption="../report/engine_parity.rst", category="Export"),
            markdown="results/tables/engine_parity.md",
        params:
            lengths=list(PLAN.export.parity.lengths),
            windows=PLAN.export.parity.windows,
            kv_cache=list(PLAN.export.parity.kv_cache),
            seed=EVAL["seed"],
        threads: EVAL["threads"]
        log:
            "logs/engine_parity.log",
        benchmark:
            "benchmarks/engine_parity.tsv"
        conda:
            ENV
        script:
            "../scripts/engine_parity.py"

# The embedded default's base model: a tiny Llama pretrained here (when the config names no model to start from).
if PLAN.base.source == "pretrain":

    rule pretrain_base:
        input:
            tokens=TRAIN_TOKENS,
            tokenizer=TOKENIZER,
        output:
            model=directory("results/base/model"),
            loss="results/base/pretrain_loss.csv",
        params:
            model=config.get("pretrain", {}).get("model"),
            train=config.get("pretrain", {}).get("train"),
            seed=config.get("pretrain", {}).get("seed"),
            original_length=L0,
            # Checkpoints live outside the outputs, so a killed job resumes instead of starting over.
            work_dir="results/base/pretrain_work",
        threads: config.get("pretrain", {}).get("threads", 1)
        resources:
            **PLAN.job_resources(),
        log:
            "logs/pretrain_base.log",
        benchmark:
            "benchmarks/pretrain_base.tsv"
        script:
            "../scripts/pretrain_base.py"

# One rule per fine-tune stage (finetune_128k, finetune_256k, …), so a stage is a target of its own: the stage's
# searched factors applied to the model it starts from, trained at the stage's length. A shell rule, so that
# `processes > 1` can launch it under torchrun.
for _stage in PLAN.finetune_stages():
    _settings = PLAN.stages[_stage].finetune

    rule:
        name:
            f"finetune_{_stage}"
        input:
            model=PLAN.model_dir(_settings.start),
            scaling=SEARCH_RUNS[_stage].factors,
            tokens=TRAIN_TOKENS,
            tokenizer=TOKENIZER,
            deepspeed=[_settings.deepspeed] if _settings.deepspeed else [],
        output:
            model=directory(f"results/finetune/{_stage}/model"),
            loss=f"results/finetune/{_stage}/loss.csv",
        params:
            settings=json.dumps({**_settings.to_dict(), "dtype": DTYPE}, sort_keys=True),
            launcher=PLAN.launcher(_stage),
            sequence=PLAN.sequence_ranks(_stage),
            script=SCRIPTS / "finetune.py",
            # Checkpoints live outside the outputs, so a killed job resumes instead of starting over.
            work_dir=f"results/finetune/{_stage}.work",
        threads: _settings.threads * _settings.processes
        priority: CHAIN_PRIORITY
        resources:
            **PLAN.job_resources("finetune", _stage),
        log:
            f"logs/finetune_{_stage}.log",
        benchmark:
            f"benchmarks/finetune_{_stage}.tsv"
        shell:
            "{params.launcher} {params.script} --model {input.model} --scaling {input.scaling} --tokens {input.tokens}"
            " --tokenizer {input.tokenizer} --out {output.model} --loss {output.loss} --work-dir {params.work_dir}"
            " --sequence {params.sequence} --settings '{params.settings}' > {log} 2>&1"


rule plot_finetune_loss:
    input:
        "results/finetune/{stage}/loss.csv",
    output:
        report("results/plots/finetune_{stage}_loss.png", caption="../report/finetune_loss.rst", category="Training"),
    log:
        "logs/plot_finetune_loss/{stage}.log",
    benchmark:
        "benchmarks/plot_finetune_loss/{stage}.tsv"
    script:
        "../scripts/plot_loss.py"


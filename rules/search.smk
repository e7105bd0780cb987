# One rule per search run, named after the paper's stages so a stage is a target of its own (`snakemake search_256k`,
# `--forcerun search_256k`): search_128k, search_256k, …, search_128k_lambda (the λ-only twin, when search.ablation
# is on), recovery_short (a short-context recovery search). Every value comes from the plan's SearchRun.
for _run in SEARCH_RUNS.values():

    rule:
        name:
            _run.rule
        input:
            unpack(lambda w, run=_run.name: search_inputs(run)),
        output:
            factors=f"{_run.folder}/factors.csv",
            json=_run.factors,
            log=f"{_run.folder}/search_log.jsonl",
            plot=report(f"{_run.folder}/convergence.png", caption="../report/convergence.rst", category="Search"),
        params:
            stage=_run.name,
            scale=_run.stage.scale,
            search=_run.settings.to_dict(),
            original_length=L0,
            attention=EVAL["attention"],
            dtype=DTYPE,
            sequence=_run.stage.sequence,
            # The generation log lives outside the outputs so a killed search resumes where it stopped.
            work_dir=f"{_run.folder}.work",
        threads: _run.settings.threads
        priority: _run.priority
        resources:
            **PLAN.job_resources("search", _run.stage.name),
        log:
            f"logs/{_run.rule}.log",
        benchmark:
            f"benchmarks/{_run.rule}.tsv"
        script:
            "../scripts/search_factors.py"

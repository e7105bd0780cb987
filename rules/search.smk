# One rule per search run, named after the paper's stages: search_128k, search_256k, … (search_128k_lambda, the
# λ-only twin, when search.ablation is on; recovery_short for a short-context recovery search).
for _run, (_stage, _settings) in search_runs().items():
    _name = f"{'recovery' if _settings['mode'] == 'recovery' else 'search'}_{_run}"

    rule:
        name:
            _name
        input:
            unpack(lambda w, settings=_settings: search_inputs(settings)),
        output:
            factors=f"results/search/{_run}/factors.csv",
            json=f"results/search/{_run}/factors.json",
            log=f"results/search/{_run}/search_log.jsonl",
            plot=report(f"results/search/{_run}/convergence.png", caption="../report/convergence.rst",
                        category="Search"),
        params:
            stage=_run,
            scale=config["stages"][_stage]["scale"],
            search=_settings,
            original_length=L0,
            attention=EVAL["attention"],
            dtype=DTYPE,
            sequence=sequence_ranks(_stage),
            # The generation log lives outside the outputs so a killed search resumes where it stopped.
            work_dir=f"results/search/{_run}.work",
        threads: _settings["threads"]
        resources:
            **job_resources("search", _stage),
        log:
            f"logs/{_name}.log",
        benchmark:
            f"benchmarks/{_name}.tsv"
        conda:
            ENV
        script:
            "../scripts/search_factors.py"

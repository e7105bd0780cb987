# One rule per search stage, named search_<stage> after the paper's stages (search_128k, search_256k, …).
for _stage in search_stages():

    rule:
        name:
            f"search_{_stage}"
        input:
            model=base_model_dir(),
            tokens="results/data/fitness.npy",
        output:
            factors=f"results/search/{_stage}/factors.csv",
            json=f"results/search/{_stage}/factors.json",
            log=f"results/search/{_stage}/search_log.jsonl",
            plot=report(f"results/search/{_stage}/convergence.png", caption="../report/convergence.rst",
                        category="Search"),
        params:
            stage=_stage,
            scale=config["stages"][_stage]["scale"],
            search=stage_search(_stage),
            original_length=L0,
            attention=EVAL["attention"],
            # The generation log lives outside the outputs so a killed search resumes where it stopped.
            work_dir=f"results/search/{_stage}.work",
        threads: stage_search(_stage)["threads"]
        log:
            f"logs/search_{_stage}.log",
        benchmark:
            f"benchmarks/search_{_stage}.tsv"
        conda:
            ENV
        script:
            "../scripts/search_factors.py"

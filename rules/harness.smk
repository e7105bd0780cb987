# lm-evaluation-harness on every subject (longrope.harness): the paper's Table 8, RULER by length, LongBench, or the
# config's own tasks. One job per suite and subject, then the suite's tables (and RULER's plot).


rule harness:
    """One suite of lm-eval tasks on one subject, patched in-process with its scaling."""
    input:
        unpack(subject_inputs),
    output:
        results="results/harness/{suite}/{subject}.json",
        scores="results/harness/{suite}/{subject}.csv",
        samples="results/harness/{suite}/{subject}.samples.csv",
    params:
        suite=lambda w: HARNESS_SUITES[w.suite].to_dict(),
        scaling=lambda w: SUBJECTS[w.subject].scaling,
        label=lambda w: SUBJECTS[w.subject].method,
        model=lambda w: SUBJECTS[w.subject].model,
        batch_size=config["harness"]["batch_size"] if HARNESS_SUITES else 1,
        seed=config["harness"]["seed"] if HARNESS_SUITES else 0,
        attention=EVAL["attention"],
        dtype=DTYPE,
    wildcard_constraints:
        suite="|".join(HARNESS_SUITES) or "^$",
        subject="|".join(HARNESS_SUBJECTS),
    threads: config["harness"]["threads"] if HARNESS_SUITES else 1
    resources:
        **PLAN.job_resources(),
    log:
        "logs/harness/{suite}/{subject}.log",
    benchmark:
        "benchmarks/harness/{suite}/{subject}.tsv"
    script:
        "../scripts/evaluate_harness.py"


for _suite in HARNESS_SUITES.values():

    rule:
        name:
            f"harness_tables_{_suite.name}"
        localrule: True
        input:
            expand("results/harness/{suite}/{subject}.samples.csv", suite=_suite.name, subject=HARNESS_SUBJECTS),
        output:
            tables=[report(f"results/tables/harness_{_suite.name}.csv", caption="../report/harness_table.rst",
                           category="Harness"),
                    f"results/tables/harness_{_suite.name}.md", f"results/tables/harness_{_suite.name}.tex"],
            # a RULER-style suite's plot by length, else the short-task retention against the base model
            extra=(report(f"results/plots/harness_{_suite.name}.png", caption="../report/harness.rst",
                          category="Harness") if _suite.lengths else
                   expand("results/tables/harness_{suite}_retention.{ext}", suite=_suite.name,
                          ext=["csv", "md", "tex"])),
        params:
            suite=_suite.to_dict(),
            name=_suite.name,
            original_length=L0,
            dpi=PLOTS["perplexity"]["dpi"],
        log:
            f"logs/harness_tables_{_suite.name}.log",
        benchmark:
            f"benchmarks/harness_tables_{_suite.name}.tsv"
        script:
            "../scripts/make_harness_tables.py"

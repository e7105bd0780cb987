"""One suite of lm-evaluation-harness tasks on one model object, as the workflow loaded and patched it.

lm-eval's `HFLM` takes the model object itself, so the scaling under test (a baseline, searched factors with n̂,
a fine-tuned model's own, the final short/long switch) is what is scored; `max_length` is set to the subject's
extended length, since without it lm-eval cuts every context to `max_position_embeddings`. The short/long factor
choice follows the padded length of the whole batch, so the default batch is 1.

Tasks run in one `simple_evaluate` call per few-shot count, and for a RULER-style suite per length too (lm-eval's
`limit` takes the first samples of a task, and RULER lists every length's samples after the previous length's);
seeded; every sample's score is kept (the tables' intervals and paired ratios resample them).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from longrope.harness.suites import Suite

SAMPLE_COLUMNS = ["task", "leaf", "length", "doc_id", "filter", "metric", "score", "response"]
AGGREGATE_COLUMNS = ["task", "metric", "filter", "value", "stderr", "samples", "length"]


def harness_model(model, tokenizer_dir: str | Path, max_length: int, batch_size: int = 1):
    """lm-eval's view of a loaded (patched) model: HFLM over the object, with the workflow's tokenizer folder."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    return HFLM(pretrained=model, tokenizer=tokenizer, max_length=max_length, batch_size=batch_size)


def run_suite(lm, suite: Suite, tokenizer_dir: str | Path, seed: int = 1234) -> tuple[dict, pd.DataFrame,
                                                                                      pd.DataFrame]:
    """(lm-eval's results and configs per few-shot count, its aggregate scores, every sample's score)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    gen_kwargs = {"max_gen_toks": suite.max_gen_toks} if suite.max_gen_toks else None
    raw, aggregates, samples = {}, [], []
    for shots, length in [(s, n) for s in sorted({s for _, s in suite.tasks}) for n in suite.lengths or [None]]:
        tasks = [task for task, n in suite.tasks if n == shots]
        # RULER builds its samples at this length with this tokenizer (the TaskManager's metadata).
        metadata = ({"max_seq_lengths": [length], "tokenizer": str(Path(tokenizer_dir).resolve())} if length
                    else None)
        manager = TaskManager(include_path=suite.include, metadata=metadata)
        out = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, num_fewshot=shots, limit=suite.limit, task_manager=manager, log_samples=True,
            gen_kwargs=gen_kwargs, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
            fewshot_random_seed=seed, bootstrap_iters=1000)
        raw[f"{shots}-shot" + (f", {length}" if length else "")] = {
            key: out[key] for key in ("results", "group_subtasks", "configs", "n-shot", "n-samples") if key in out}
        for task in tasks:
            for leaf in _leaves(task, out.get("group_subtasks", {})):
                aggregates += _aggregate_rows(task, leaf, out["results"].get(leaf, {}), out.get("n-samples", {}),
                                              length)
                samples += _sample_rows(task, leaf, out["samples"].get(leaf, []), suite)
    return raw, pd.DataFrame(aggregates, columns=["leaf", *AGGREGATE_COLUMNS]), pd.DataFrame(samples,
                                                                                            columns=SAMPLE_COLUMNS)


def _leaves(task: str, groups: dict) -> list[str]:
    """A task itself, or every task under a group (MMLU: 57 subjects in four subgroups)."""
    if task not in groups:
        return [task]
    return [leaf for sub in groups[task] for leaf in _leaves(sub, groups)]


def _aggregate_rows(task: str, leaf: str, results: dict, counts: dict, length: int | None) -> list[dict]:
    rows = []
    for key, value in results.items():
        if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
            continue
        metric, filter_ = key.split(",", 1)
        if length and metric != str(length):  # RULER's placeholder scores (-1) for the lengths not run
            continue
        stderr = results.get(f"{metric}_stderr,{filter_}")
        rows.append({"leaf": leaf, "task": task, "metric": metric, "filter": filter_, "value": value,
                     "stderr": stderr if isinstance(stderr, (int, float)) else None,
                     "samples": counts.get(leaf, {}).get("effective"), "length": length})
    return rows


def _sample_rows(task: str, leaf: str, samples: list[dict], suite: Suite) -> list[dict]:
    """One row per sample and metric. RULER scores each sample under a metric per length, -1 for the lengths it
    was not generated at (and a placeholder default length): only the suite's lengths are kept."""
    rows = []
    for sample in samples:
        for metric in sample["metrics"]:
            length = None
            if suite.lengths:
                if not metric.isdigit() or int(metric) not in suite.lengths or sample[metric] < 0:
                    continue
                length = int(metric)
            rows.append({"task": task, "leaf": leaf, "length": length, "doc_id": int(sample["doc_id"]),
                         "filter": sample.get("filter", "none"), "metric": metric, "score": float(sample[metric]),
                         "response": str(sample["filtered_resps"])})  # generated text, or each choice's loglik
    return rows

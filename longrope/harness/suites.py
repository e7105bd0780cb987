"""Suites: named sets of lm-eval tasks with their few-shot counts, the metric each is reported by, and for
length-indexed suites (RULER) the lengths and the threshold of the effective length. Built-in names fill what the
config leaves out; any other name is a suite of the config's own tasks (e.g. local-file tasks under `include`).
Pure Python: the plan reads it on the submitting node."""
from __future__ import annotations

from dataclasses import dataclass

# The paper's Table 8 (the Open LLM Leaderboard v1): task -> (few-shot, metric). MMLU is a group of 57 subjects,
# averaged unweighted as the leaderboard did (lm-eval's own group score weights by subject size).
TABLE8 = {"arc_challenge": (25, "acc_norm"), "hellaswag": (10, "acc_norm"), "mmlu": (5, "acc"),
          "truthfulqa_mc2": (0, "acc")}
# RULER's subtasks that build their data locally (the essay haystacks and QA tasks download; ruler_vt does not end
# with byte-level tokens); scored by string_match_all, one metric per length.
RULER_OFFLINE = ("niah_single_1", "niah_multikey_2", "niah_multikey_3", "ruler_cwe", "ruler_fwe")
RULER_THRESHOLD = 85.6  # RULER's: Llama2-7B's average at 4k
BUILT_IN = {
    "table8": {"tasks": {task: shots for task, (shots, _) in TABLE8.items()},
               "metrics": {task: metric for task, (_, metric) in TABLE8.items()}},
    "ruler": {"tasks": {task: 0 for task in RULER_OFFLINE}, "threshold": RULER_THRESHOLD},
    "longbench": {"tasks": {"longbench": 0}},
    "longbench2": {"tasks": {"longbench2": 0}},
}


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[tuple[str, int], ...]  # (task or group, few-shot)
    metrics: tuple[tuple[str, str], ...] = ()  # task -> the metric it is reported by (default: its first)
    lengths: tuple[int, ...] = ()  # RULER-style: the sequence lengths the tasks are generated at
    threshold: float | None = None  # score (0-100) a length must reach to count towards the effective length
    limit: int | None = None  # samples per task (and length); None = all
    max_gen_toks: int | None = None  # cap on generated tokens (None = each task's own)
    include: str | None = None  # a folder of task YAMLs (local-file tasks)

    @classmethod
    def from_config(cls, name: str, spec: dict) -> Suite:
        spec = {**BUILT_IN.get(name, {}), **spec}
        if not spec.get("tasks"):
            raise ValueError(f"harness.suites.{name}: no tasks (only {', '.join(BUILT_IN)} have defaults)")
        tasks = spec["tasks"]
        tasks = tasks if isinstance(tasks, dict) else {task: 0 for task in tasks}
        return cls(name, tuple(tasks.items()), tuple(spec.get("metrics", {}).items()), tuple(spec.get("lengths", ())),
                   spec.get("threshold"), spec.get("limit"), spec.get("max_gen_toks"), spec.get("include"))

    def metric(self, task: str) -> str | None:
        return dict(self.metrics).get(task)

    def to_dict(self) -> dict:
        return {"tasks": dict(self.tasks), "metrics": dict(self.metrics), "lengths": list(self.lengths),
                "threshold": self.threshold, "limit": self.limit, "max_gen_toks": self.max_gen_toks,
                "include": self.include}

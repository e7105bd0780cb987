"""The field's harness: lm-evaluation-harness on any model the workflow has, patched in-process with its scaling
(run), the suites the config names and their defaults — the paper's Table 8, RULER by length, LongBench — (suites),
and the tables and plot made from lm-eval's per-sample scores, with intervals (report).

The project's own passkey stays (lm-eval has none offline); its own RULER-style needle tasks serve only the
byte-level and BPE toy models lm-eval's tasks cannot (a real model's RULER comes from here: longrope.plan refuses
evaluation.needles with a pretrained tokenizer).

May import: longrope.evaluation (stats), lm_eval (lazily, an optional extra: pip install -e ".[harness]").
"""

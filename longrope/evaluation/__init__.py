"""Measuring models: perplexity on fixed windows (perplexity), passkey and RULER-style needles (retrieval), which
scalings a job evaluates (subjects), the per-measurement and per-window records (records), intervals and paired
ratios (stats), and the paper-style tables and plots built from the records (report).

May import: longrope.rope, model, patching, factors, data, parallelism.
"""

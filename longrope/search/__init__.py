"""The search for LongRoPE factors: the pure evolution engine (engine, paper Algorithm 1), the fitness that scores
candidate scalings on model replicas (fitness) and the windows it scores them on (windows). What a search leaves,
factors.json / factors.csv, is longrope.factors.FoundFactors.

May import: longrope.rope, model, patching, factors, data, evaluation.perplexity and evaluation.stats (fitness is a
perplexity), parallelism. A new fitness goes in windows.py (what is scored) and fitness.py (how).
"""

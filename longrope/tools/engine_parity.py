"""Cross-engine parity of an exported model: perplexity and next-token agreement through stock transformers and
through llama.cpp on the same held-out windows, one row per length (longrope.export.parity), as a Markdown table.

    .venv/bin/python -m longrope.tools.engine_parity --model results/export/model \
        --tokens results/data/stores/heldout-evaluation-<digest> --lengths 64 128 256 512 1024 2048

Without --gguf the model's GGUF is written first (longrope.export.gguf, --dtype). Windows are drawn from the token
store as the evaluation jobs draw them (same seed and length, same windows); needs the `llama` extra.
"""
import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from longrope.data.tokens import TokenStore
from longrope.data.windows import sample_windows
from longrope.evaluation.report import markdown
from longrope.export.gguf import write_gguf
from longrope.export.parity import KV_CACHE_TYPES, engine_parity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an exported folder (results/export/model)")
    parser.add_argument("--tokens", required=True, help="a token store of held-out text (the evaluation role's)")
    parser.add_argument("--lengths", type=int, nargs="+", required=True)
    parser.add_argument("--gguf", help="the model's GGUF; default: written from --model with --dtype")
    parser.add_argument("--dtype", default="f16", help="the GGUF's weight type when it is written here")
    parser.add_argument("--windows", type=int, default=8, help="windows per length")
    parser.add_argument("--seed", type=int, default=1234, help="evaluation.seed: the windows evaluate_* scores")
    parser.add_argument("--kv-cache", nargs="+", default=["f16", "f32"], choices=list(KV_CACHE_TYPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="also write the table here (Markdown)")
    args = parser.parse_args()

    tokens = TokenStore.open(args.tokens).tokens
    windows = {n: sample_windows(tokens, n, args.windows, seed=[args.seed, n]) for n in args.lengths}
    with tempfile.TemporaryDirectory() as scratch:
        gguf_path = args.gguf or Path(scratch) / "model.gguf"
        if not args.gguf:
            write_gguf(args.model, gguf_path, dtype=args.dtype)
        t0 = time.time()
        rows = engine_parity(args.model, gguf_path, windows, kv_caches=tuple(args.kv_cache), threads=args.threads)
    table = pd.DataFrame(rows)
    table["ppl_rel_diff"] = table["ppl_rel_diff"] * 100  # percent
    table = (table.rename(columns={"ppl_rel_diff": "ppl_rel_diff_%"}).set_index(["kv_cache", "length"])
             .sort_index())
    text = markdown(table, digits=4)
    print(text, f"\n{len(rows)} rows in {time.time() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Cross-engine parity of an exported model: perplexity and next-token agreement through stock transformers, this
package's loader, llama.cpp and (on a GPU) vLLM on the same held-out windows, one row per engine and length
(longrope.export.parity), as a Markdown table. The workflow's `engine_parity` rule (export.parity) writes the same
table into results/tables; this tool runs it on any exported folder and GGUF.

    longrope-engine-parity --model results/export/model \
        --tokens results/data/stores/heldout-evaluation-<digest> --lengths 64 128 256 512 1024 2048

Without --gguf the model's GGUF is written first (longrope.export.gguf, --dtype). Windows are drawn from the token
store by seed and length (each length its own windows, longrope.export.parity.parity_windows); needs
the `llama` extra. On a CUDA machine with vLLM installed, --vllm adds vLLM's rows (the transformers engines then run
on the GPU too).
"""
import argparse
import tempfile
import time
from pathlib import Path

from longrope.data.tokens import TokenStore
from longrope.evaluation.report import markdown
from longrope.export.parity import KV_CACHE_TYPES, engine_parity, parity_table, parity_windows


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
    parser.add_argument("--vllm", action="store_true", help="also score through vLLM (a CUDA machine with vLLM)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="also write the table here (Markdown)")
    args = parser.parse_args()

    tokens = TokenStore.open(args.tokens).tokens
    windows = parity_windows(tokens, args.lengths, args.windows, args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        gguf_path = args.gguf or Path(scratch) / "model.gguf"
        if not args.gguf:
            from longrope.export.gguf import write_gguf  # here: --help and a given GGUF need no gguf package

            write_gguf(args.model, gguf_path, dtype=args.dtype)
        t0 = time.time()
        rows = engine_parity(args.model, gguf_path, windows, kv_caches=tuple(args.kv_cache), threads=args.threads,
                             vllm=args.vllm)
    text = markdown(parity_table(rows), digits=4)
    print(text, f"\n{len(rows)} rows in {time.time() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

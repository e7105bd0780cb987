"""Export a model folder with a factors.json — a search stage's, or one written by hand from factors found elsewhere
(the official code's CSVs) — as the workflow's `export` rule does: a checkpoint stock transformers and vLLM load,
with the factor sets `--switch` chooses; `--gguf` also writes llama.cpp's file (longrope.export.gguf).

    longrope-export --model results/base/model --factors my_factors.json \\
        --tokenizer results/base/model --out exported [--switch dynamic] [--n-hat zero] [--gguf exported.gguf --dtype f16]

--n-hat zero (the default) refuses factors with n̂ > 0, which stock transformers, vLLM and llama.cpp drop; keep writes
them for this package's loader only (no vLLM keys, no GGUF).

A hand-written factors.json needs only {"scaling": {...}}: a RopeScaling as a dict (longrope/rope.py), e.g.
{"scaling": {"method": "longrope", "original_length": 8192, "target_length": 16384, "factors": [...]}}.
"""
import argparse

from longrope.export.hf import N_HAT_POLICIES, SWITCHES, export_checkpoint
from longrope.factors import load_factors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a Hugging Face folder (the weights the factors go with)")
    parser.add_argument("--factors", required=True, help="a factors.json with a 'scaling' entry")
    parser.add_argument("--tokenizer", required=True, help="a tokenizer folder (this package's, or the model's own)")
    parser.add_argument("--out", required=True, help="the exported folder")
    parser.add_argument("--switch", default="dynamic", choices=SWITCHES)
    parser.add_argument("--n-hat", default="zero", choices=N_HAT_POLICIES, help="export.n_hat: what happens to n̂")
    parser.add_argument("--gguf", help="also write the export as a GGUF file here")
    parser.add_argument("--dtype", default="f16", help="the GGUF's weight type (f32, f16, bf16, q8_0)")
    args = parser.parse_args()
    if args.gguf and args.n_hat == "keep":
        parser.error("--gguf: --n-hat keep exports for this package's loader only; llama.cpp cannot run n̂")

    scaling = export_checkpoint(args.model, load_factors(args.factors), args.switch, args.tokenizer, args.out,
                                n_hat=args.n_hat)
    print(f"{args.out}: long factors up to {max(scaling.factors):g}, switch length {scaling.switch_length}, "
          f"short set {'its own' if scaling.short_factors else 'equal to the long set'}")
    if args.gguf:
        from longrope.export.gguf import write_gguf  # here: the gguf extra is needed only with --gguf

        for key, value in write_gguf(args.out, args.gguf, dtype=args.dtype).items():
            print(f"{args.gguf}: {key} = {value}")


if __name__ == "__main__":
    main()

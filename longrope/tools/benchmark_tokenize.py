"""Token stores at the paper's scale, on N MiB of text made by repeating the bundled books (data/corpus), measured
side by side in one run:

- throughput of the store writer (longrope.data.tokens.write_store: batches, document markers, the vocabulary
  check, the file) against the fast tokenizer's own `encode_batch` on the same texts, batches and threads;
  goal ≥ 0.8× (in wall time, and in CPU time, which another job on a shared machine skews less);
- peak RSS of the tokenize step at 0.25× and 1× the size; goal ratio ≤ 1.2 (memory does not grow with the corpus);
- peak RSS of a fine-tuning step reading the store just written at each size: the fine-tune job's own loop
  (longrope.training.loop.train: sampling 'chunks' as scripts/finetune.py checks and draws them, forward, backward,
  AdamW) on a tiny Llama of the embedded default's shape, --steps steps of one --seq-len row; goal: equal within 10 %
  (the store is a memory map whose pages are read only as the windows touch them).

Each measurement runs in a fresh process, so each peak is its own; the books (~10 MB) are read once per process
and repeated as they are consumed, so the text itself is never held whole either. The tokenizer is a byte-level BPE
of --vocab ids trained on the books by the project's trainer (the default), the byte tokenizer, or a folder. The
figures go to --out (JSON) and beside it as a markdown table (.md).

    .venv/bin/python -m longrope.tools.benchmark_tokenize --mb 1024 --threads 2
    .venv/bin/python -m longrope.tools.benchmark_tokenize --mb 256 --tokenizer byte --out /tmp/bench/byte.json
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from longrope.data.corpus import book_path, list_books, read_book
from longrope.data.tokenizer import load_tokenizer, train_tokenizer
from longrope.data.tokens import CHARS_PER_THREAD, text_batches, write_store
from longrope.tools.provenance import cores, cpu

CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpus"


def bundled_books() -> list[str]:
    return [read_book(book_path(CORPUS, name)) for name in list_books(CORPUS, ["*", "shakespeare/*"])]


def repeated(books: list[str], mb: float):
    """The books over and over, the last one cut, until `mb` MiB of text (in characters) have been given."""
    left = int(mb * 2**20)
    while True:
        for text in books:
            if left <= 0:
                return
            yield text[:left]
            left -= len(text)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def cpu_seconds() -> float:
    """This process's CPU time, all its threads: a throughput that another job on a shared machine hardly skews."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(mode: str, mb: float, args) -> dict:
    """Runs in the child process. `store`: write_store into <work dir>/store; `encode`: the fast tokenizer's
    encode_batch on the same batches, its encodings dropped; `finetune`: training steps on <work dir>/store."""
    if mode == "finetune":
        return finetune(args)
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before the first batch starts the tokenizer's thread pool
    texts, batch_chars = repeated(bundled_books(), mb), args.threads * CHARS_PER_THREAD
    if mode == "store":
        tokenizer = load_tokenizer(args.tokenizer)
        start, cpu, before = time.perf_counter(), cpu_seconds(), peak_rss_mb()
        store = write_store(Path(args.work_dir) / "store", tokenizer, texts, f"{mb} MiB of the bundled books",
                            batch_chars)
        seconds, tokens = time.perf_counter() - start, store.meta["tokens"]
    else:
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(Path(args.tokenizer) / "tokenizer.json"))
        start, cpu, before, tokens = time.perf_counter(), cpu_seconds(), peak_rss_mb(), 0
        for batch in text_batches(texts, batch_chars):
            tokens += sum(len(encoding) for encoding in fast.encode_batch(batch, add_special_tokens=False))
        seconds = time.perf_counter() - start
    return {"mode": mode, "mb": mb, "seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "tokens": tokens,
            "peak_mb": peak_rss_mb(), "before_mb": before}


def finetune(args) -> dict:
    """What scripts/finetune.py does with a store, on a tiny Llama whose vocabulary is the tokenizer's: the chunk
    supply checked, then train() with its default backend (one process, fp32, AdamW)."""
    import torch

    from longrope.data.tokens import load_tokens
    from longrope.model import TINY_LLAMA, tiny_llama
    from longrope.training.loop import TrainConfig, chunk_supply_error, train

    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    tokenizer, tokens = load_tokenizer(args.tokenizer), load_tokens(work / "store")
    cfg = TrainConfig(steps=args.steps, batch_size=1, seq_len=args.seq_len, lr=1e-4, sampling="chunks",
                      checkpoint_every=args.steps)  # no checkpoint: only the last step could make one, and it does not
    if error := chunk_supply_error(tokens, cfg, tokenizer):
        sys.exit(error)
    model = tiny_llama(**{**TINY_LLAMA, "vocab_size": tokenizer.vocab_size})
    start, before = time.perf_counter(), peak_rss_mb()
    train(model, tokens, tokenizer, cfg, work / "checkpoints", work / "loss.csv")
    seconds = time.perf_counter() - start
    losses = [float(line.split(",")[1]) for line in (work / "loss.csv").read_text().split()[1:]]
    return {"mode": "finetune", "mb": args.mb, "seconds": seconds, "store_tokens": len(tokens), "losses": losses,
            "peak_mb": peak_rss_mb(), "before_mb": before}


def run_child(mode: str, mb: float, args, tokenizer_dir: str, work_dir: str) -> dict:
    options = {"--child": mode, "--mb": mb, "--threads": args.threads, "--tokenizer": tokenizer_dir,
               "--work-dir": work_dir, "--seq-len": args.seq_len, "--steps": args.steps}
    out = subprocess.run([sys.executable, "-m", "longrope.tools.benchmark_tokenize",
                          *(str(word) for pair in options.items() for word in pair)],
                         stdout=subprocess.PIPE, text=True, check=True)
    print(f"{mode} at {mb:g} MiB: done", file=sys.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=256, help="MiB of text at 1× (0.25× is measured too)")
    parser.add_argument("--threads", type=int, default=2, help="the tokenizer's and torch's threads")
    parser.add_argument("--tokenizer", default="bpe", help="bpe (trained here on the books), byte, or a folder")
    parser.add_argument("--vocab", type=int, default=8192, help="the trained BPE's vocabulary")
    parser.add_argument("--seq-len", type=int, default=4096, help="tokens per fine-tuning row")
    parser.add_argument("--steps", type=int, default=3, help="fine-tuning steps (forward, backward, AdamW)")
    parser.add_argument("--work-dir", help="where the stores are written (and removed); default: the system's temp")
    parser.add_argument("--out", default="results/benchmarks/tokenize.json", help="the figures; a .md beside it")
    parser.add_argument("--child", choices=["store", "encode", "finetune"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.mb, args)))
        return
    with tempfile.TemporaryDirectory(dir=args.work_dir) as folder:
        tokenizer_dir = args.tokenizer if args.tokenizer not in ("bpe", "byte") else folder
        if args.tokenizer in ("bpe", "byte"):
            train_tokenizer(args.tokenizer, bundled_books() if args.tokenizer == "bpe" else [], args.vocab).save(folder)
        vocab = load_tokenizer(tokenizer_dir).vocab_size
        rows = []
        for mb in (args.mb / 4, args.mb):
            with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
                rows.append({mode: run_child(mode, mb, args, tokenizer_dir, work_dir)
                             for mode in ("store", "encode", "finetune")})
    small = rows[0]
    for row in rows:
        row["writer_over_encode_batch"] = row["encode"]["seconds"] / row["store"]["seconds"]
        row["writer_over_encode_batch_cpu"] = row["encode"]["cpu_seconds"] / row["store"]["cpu_seconds"]
        row["writer_peak_over_quarter"] = row["store"]["peak_mb"] / small["store"]["peak_mb"]
        row["finetune_peak_over_quarter"] = row["finetune"]["peak_mb"] / small["finetune"]["peak_mb"]
    figures = {"cpu": f"{cpu()}, {cores()} cores", "threads": args.threads, "tokenizer": args.tokenizer, "vocab_size": vocab,
               "seq_len": args.seq_len, "steps": args.steps, "load_average_at_end": os.getloadavg(), "rows": rows}
    lines = [(f"{figures['cpu']}; {args.threads} thread(s); tokenizer {args.tokenizer} (vocabulary {vocab}); "
              f"fine-tuning: {args.steps} steps of one {args.seq_len}-token row"), "",
             ("| MiB of text | tokens | store writer MiB/s | encode_batch MiB/s | writer / encode_batch (CPU time) | "
              "writer peak RSS, MB | / at 0.25× | fine-tune step peak RSS, MB | / at 0.25× |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        store, encode, finetune = row["store"], row["encode"], row["finetune"]
        lines.append(f"| {store['mb']:g} | {store['tokens']:,} | {store['mb'] / store['seconds']:.2f} | "
                     f"{encode['mb'] / encode['seconds']:.2f} | {row['writer_over_encode_batch']:.2f} "
                     f"({row['writer_over_encode_batch_cpu']:.2f}) | "
                     f"{store['peak_mb']:.0f} | {row['writer_peak_over_quarter']:.2f} | {finetune['peak_mb']:.0f} | "
                     f"{row['finetune_peak_over_quarter']:.2f} |")
    lines.append(f"\nBefore its first batch the writer's process held {rows[-1]['store']['before_mb']:.0f} MB (Python, "
                 f"the tokenizer, the books); encode_batch peaked at {rows[-1]['encode']['peak_mb']:.0f} MB; the "
                 f"fine-tune process held {rows[-1]['finetune']['before_mb']:.0f} MB before its first step. Load average "
                 f"at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

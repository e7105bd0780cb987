"""Tokenizing into a token store against the fast tokenizer alone, on N MB of text made by repeating the bundled
books (data/corpus), measured side by side in one run:

- throughput of the store writer (longrope.data.tokens.write_store: batches, document markers, the vocabulary
  check, the file) against the fast tokenizer's own `encode_batch` on the same texts, batches and threads;
  goal ≥ 0.8×;
- peak RSS of the tokenize step at 0.25× and 1× the size; goal ratio ≤ 1.2 (memory does not grow with the corpus).

Each measurement runs in a fresh process, so each peak is its own; the books (~10 MB) are read once per process
and repeated as they are consumed, so the text itself is never held whole either.

    .venv/bin/python -m longrope.tools.benchmark_tokenize --mb 256 --threads 2
    .venv/bin/python -m longrope.tools.benchmark_tokenize --mb 1024 --tokenizer results/data/tokenizer
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
from longrope.data.tokenizer import byte_tokenizer, load_tokenizer
from longrope.data.tokens import CHARS_PER_THREAD, text_batches, write_store

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


def measure(mode: str, mb: float, tokenizer_dir: str, threads: int, work_dir: str) -> dict:
    """Runs in the child process. `store`: write_store into a store under `work_dir`; `encode`: the fast tokenizer's
    encode_batch on the same batches, its encodings dropped."""
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # before the first batch starts the tokenizer's thread pool
    texts, batch_chars = repeated(bundled_books(), mb), threads * CHARS_PER_THREAD
    if mode == "store":
        tokenizer = load_tokenizer(tokenizer_dir)
        start, before = time.perf_counter(), peak_rss_mb()
        store = write_store(Path(work_dir) / "store", tokenizer, texts, f"{mb} MiB of the bundled books", batch_chars)
        seconds, tokens = time.perf_counter() - start, store.meta["tokens"]
    else:
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
        start, before, tokens = time.perf_counter(), peak_rss_mb(), 0
        for batch in text_batches(texts, batch_chars):
            tokens += sum(len(encoding) for encoding in fast.encode_batch(batch, add_special_tokens=False))
        seconds = time.perf_counter() - start
    return {"mode": mode, "mb": mb, "seconds": seconds, "tokens": tokens, "peak_mb": peak_rss_mb(),
            "before_mb": before}


def run_child(mode: str, mb: float, args, tokenizer_dir: str) -> dict:
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
        out = subprocess.run([sys.executable, "-m", "longrope.tools.benchmark_tokenize", "--child", mode,
                              "--mb", str(mb), "--threads", str(args.threads), "--tokenizer", tokenizer_dir,
                              "--work-dir", work_dir], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=256, help="MiB of text at 1× (0.25× is measured too)")
    parser.add_argument("--threads", type=int, default=2, help="the tokenizer's threads (RAYON_NUM_THREADS)")
    parser.add_argument("--tokenizer", help="a tokenizer folder (default: the byte tokenizer of the default config)")
    parser.add_argument("--work-dir", help="where the stores are written (and removed); default: the system's temp")
    parser.add_argument("--child", choices=["store", "encode"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.mb, args.tokenizer, args.threads, args.work_dir)))
        return
    with tempfile.TemporaryDirectory() as folder:
        tokenizer_dir = args.tokenizer or folder
        if not args.tokenizer:
            byte_tokenizer().save(folder)
        rows = [(run_child("store", mb, args, tokenizer_dir), run_child("encode", mb, args, tokenizer_dir))
                for mb in (args.mb / 4, args.mb)]
    print("| MiB of text | tokens | store writer MiB/s | encode_batch MiB/s | writer / encode_batch | "
          "peak RSS of the writer, MB | peak RSS / peak at 0.25× |")
    print("|---|---|---|---|---|---|---|")
    for store, encode in rows:
        print(f"| {store['mb']:g} | {store['tokens']:,} | {store['mb'] / store['seconds']:.2f} | "
              f"{encode['mb'] / encode['seconds']:.2f} | {encode['seconds'] / store['seconds']:.2f} | "
              f"{store['peak_mb']:.0f} | {store['peak_mb'] / rows[0][0]['peak_mb']:.2f} |")
    print(f"{args.threads} thread(s); the writer's process held {rows[-1][0]['before_mb']:.0f} MB before its first "
          f"batch (Python, the tokenizer, the books); encode_batch peaked at {rows[-1][1]['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()

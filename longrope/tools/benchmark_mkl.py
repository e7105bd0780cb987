"""oneMKL's kernels with and without the preloaded library of longrope.cpu.mkl: the fp32 Linear shapes of the
embedded default's tiny Llama and of SmolLM2-135M, and a search-fitness forward (4 windows of 1,024 tokens) of the
tiny Llama, each timed in a fresh process both ways, side by side.

    .venv/bin/python -m longrope.tools.benchmark_mkl --threads 1 2
"""
import argparse
import json
import os
import subprocess
import sys

from longrope.cpu.mkl import preload_environment

# (rows, in, out): a 4,096-token batch through the tiny Llama's projections, MLP and vocabulary; SmolLM2's MLP and
# vocabulary for 2,048 tokens.
SHAPES = [(4096, 256, 256), (4096, 256, 672), (4096, 672, 256), (4096, 256, 258), (2048, 576, 1536),
          (2048, 1536, 576), (2048, 576, 49152)]

MEASURE = """
import json, sys, time, torch
from longrope.model import TINY_LLAMA, next_token_nll, tiny_llama
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)

def best(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); f(); times.append(time.perf_counter() - start)
    return min(times)

result = {}
for rows, n_in, n_out in json.loads(sys.argv[2]):
    x, w = torch.randn(rows, n_in), torch.randn(n_out, n_in)
    seconds = best(lambda: torch.nn.functional.linear(x, w), 20)
    result[f"linear {rows}x{n_in}->{n_out}"] = 2 * rows * n_in * n_out / seconds / 1e9
model = tiny_llama(**TINY_LLAMA).eval()
ids = torch.randint(0, TINY_LLAMA["vocab_size"], (4, 1025))
with torch.no_grad():
    result["fitness forward, s"] = best(lambda: next_token_nll(model, ids), 5)
print(json.dumps(result))
"""


def measure(threads: int, preload: bool) -> dict:
    env = {**os.environ, **(preload_environment() if preload else {})}
    if not preload:
        env.pop("LD_PRELOAD", None)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(threads), json.dumps(SHAPES)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if not preload_environment({}):
        sys.exit("the library of longrope.cpu.mkl is not built here (pip install -e . with a C compiler, Linux)")
    print("measure | threads | MKL's own choice | preloaded | preloaded / own")
    for threads in args.threads:
        own, preloaded = measure(threads, False), measure(threads, True)
        for name in own:
            unit = "s" if name.endswith(", s") else "GFLOP/s"
            ratio = own[name] / preloaded[name] if unit == "s" else preloaded[name] / own[name]
            print(f"{name} ({unit}) | {threads} | {own[name]:.3g} | {preloaded[name]:.3g} | {ratio:.2f}x faster")


if __name__ == "__main__":
    main()

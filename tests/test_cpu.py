"""longrope.cpu.mkl: the library that lets oneMKL take its fast kernels on AMD CPUs is built with the package, reaches
a process through LD_PRELOAD, and changes no product beyond fp32 rounding."""
import ctypes
import json
import os
import subprocess
import sys

import torch

from longrope.cpu.mkl import library_path, preload_environment

PRODUCT = """
import ctypes, json, torch
preloaded = hasattr(ctypes.CDLL(None), "mkl_serv_intel_cpu_true")  # only a preload puts it in the global scope
g = torch.Generator().manual_seed(0)
x, w = torch.randn(512, 256, generator=g), torch.randn(672, 256, generator=g)
print(json.dumps({"preloaded": preloaded, "y": torch.nn.functional.linear(x, w).flatten()[::97].tolist()}))
"""


def run_product(env):
    out = subprocess.run([sys.executable, "-c", PRODUCT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_library_is_built_and_answers_yes():
    library = library_path()
    assert library is not None, "pip install -e . builds longrope/cpu/intel_mkl_path.c on Linux"
    assert ctypes.CDLL(str(library)).mkl_serv_intel_cpu_true() == 1


def test_a_preloaded_process_computes_the_same_products():
    plain_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    plain = run_product(plain_env)
    preloaded = run_product({**plain_env, **preload_environment(plain_env)})
    assert not plain["preloaded"] and preloaded["preloaded"]
    torch.testing.assert_close(torch.tensor(preloaded["y"]), torch.tensor(plain["y"]), rtol=1e-5, atol=1e-4)


def test_the_preload_is_added_once_beside_others():
    library = str(library_path())
    assert preload_environment({}) == {"LD_PRELOAD": library}
    assert preload_environment({"LD_PRELOAD": "/opt/other.so"}) == {"LD_PRELOAD": f"/opt/other.so {library}"}
    assert preload_environment({"LD_PRELOAD": library}) == {}

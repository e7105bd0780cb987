"""oneMKL's fast GEMM kernels on AMD CPUs.

torch's CPU build computes fp32 matrix products with oneMKL, which takes its fastest kernels only on CPUs that
identify as Intel's; on AMD processors, as both kinds of EPYC machine here, `nn.Linear` runs 1.3-2x slower than
the same instructions allow (`python -m longrope.tools.benchmark_mkl`). The fix PyTorch's maintainers describe is
to preload a library whose `mkl_serv_intel_cpu_true` answers yes (pytorch/builder#1245); `intel_mkl_path.c` is that
library, built with the package. MKL then still picks kernels by the instruction sets the CPU reports, and on Intel
CPUs nothing changes.

The preload must be in place before torch is loaded, so it travels as LD_PRELOAD in the environment of the
processes the workflow starts (`preload_environment`). Without a build of the library (no C compiler at install,
not Linux) nothing is preloaded and MKL keeps its own choice.
"""
from __future__ import annotations

import importlib.machinery
import os
import sys
from pathlib import Path

LIBRARY = "longrope.cpu._intel_mkl_path"  # built from intel_mkl_path.c (pyproject.toml, ext-modules)


def library_path() -> Path | None:
    """The built library, or None where it was not built or cannot be preloaded (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    folder = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / f"_intel_mkl_path{suffix}"
        if candidate.is_file():
            return candidate
    return None


def preload_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """LD_PRELOAD for `environ` (default os.environ) with the library added, or {} where it is missing, already
    there, or its path holds a space or colon (LD_PRELOAD's separators)."""
    environ = os.environ if environ is None else environ
    library = library_path()
    if library is None or any(c in str(library) for c in " :"):
        return {}
    preloaded = environ.get("LD_PRELOAD", "").split()
    if str(library) in preloaded:
        return {}
    return {"LD_PRELOAD": " ".join([*preloaded, str(library)])}


def preload_here() -> bool:
    """Load the library into this process as LD_PRELOAD would have (for a test runner that starts before the
    workflow's environment exists); possible only before torch is imported. Whether it is in place now."""
    import ctypes

    library = library_path()
    if library is None or "torch" in sys.modules:
        return False
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return True

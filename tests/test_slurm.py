"""A real one-node SLURM on localhost: config/test.yaml's recipe through sbatch (every stage up to the export and a
job of each evaluation rule), equal to a local run, and a fine-tune whose two ranks srun starts (the multi-node
launch path, on one node).

Needs root and Debian's slurmctld, slurmd, slurm-client and munge, installed here with apt-get when missing. Without
root or apt-get the tests skip, except under LONGROPE_REQUIRE_SLURM=1 (CI), where that is a failure.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, snakemake_cmd
from test_finetune import check_two_ranks_train_the_weights_of_one, inputs  # noqa: F401 (a fixture)

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun", "scontrol", "munged"]
# The default location: the srun inside each job gets a cleaned environment without SLURM_CONF.
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by the longrope tests (tests/test_slurm.py), removed when they end\n"


def unavailable(reason):
    if os.environ.get("LONGROPE_REQUIRE_SLURM") == "1":
        pytest.fail(f"LONGROPE_REQUIRE_SLURM=1, but {reason}")
    pytest.skip(reason)


def install():
    if os.geteuid() != 0:
        unavailable("a local SLURM cluster needs root")
    if all(shutil.which(b) for b in BINARIES):
        return
    if shutil.which("apt-get") is None:
        unavailable("SLURM is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "install", "-y", "-q", *PACKAGES]
    if subprocess.run(apt, env=env, capture_output=True).returncode != 0:  # a stale package list: refresh once
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(apt, env=env, capture_output=True, check=True)


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {seconds} s")
        time.sleep(0.5)


def munge_works():
    munge = subprocess.run(["munge", "-n"], capture_output=True)
    return munge.returncode == 0 and subprocess.run(["unmunge"], input=munge.stdout, capture_output=True).returncode == 0


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """slurmctld and slurmd (and munged, unless one already runs) for this module, configured in /etc/slurm/slurm.conf."""
    install()
    if SLURM_CONF.is_file() and not SLURM_CONF.read_text().startswith(MARK):
        unavailable(f"{SLURM_CONF} exists: this machine has its own SLURM configuration, which the test would replace")
    home = tmp_path_factory.mktemp("slurm")
    pid_files = []  # of the daemons started here: the only ones stopped at the end
    try:
        if not munge_works():
            Path("/run/munge").mkdir(exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
            pid_files.append(Path("/run/munge/munged.pid"))
            wait_for(munge_works, 10, "munged did not answer")
        write_slurm_conf(home)
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon], check=True)
            pid_files.append(home / f"{daemon}.pid")
        sinfo = lambda: subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.strip()
        wait_for(lambda: sinfo() == "idle", 30, f"the node is not idle (sinfo: {sinfo()!r}; logs in {home})")
        yield home
    finally:
        stop(pid_files, home)
        SLURM_CONF.unlink(missing_ok=True)


def stop(pid_files, home):
    """Let the job steps end, then stop the daemons in the reverse of their start: a step's slurmstepd reports its end
    to slurmctld through munged after srun returns, and with those gone it retries until slurmd kills it (~90 s)."""
    if home / "slurmd.pid" in pid_files:  # slurmd started: its jobs may still have steps
        steps = lambda: subprocess.run(["squeue", "-h", "-s", "-o", "%i"], capture_output=True, text=True).stdout.strip()
        wait_for(lambda: not steps(), 60, f"job steps still run (squeue: {steps()!r}; logs in {home})")
    for pid_file in reversed(pid_files):
        if not pid_file.is_file():
            continue
        pid = int(pid_file.read_text())
        if pid_alive(pid):
            os.kill(pid, 15)
        wait_for(lambda: not pid_alive(pid), 60, f"{pid_file.stem} did not stop (logs in {home})")  # slurmd: ~18 s


def write_slurm_conf(home):
    """One node, this machine: its CPUs, 80 % of its memory; no cgroups, no accounting database; finished jobs stay
    visible to squeue for 10 minutes (the plugin's status source here)."""
    host = socket.gethostname()
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(MARK + f"""\
ClusterName=longrope-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={home}/state
SlurmdSpoolDir={home}/spool
SlurmctldPidFile={home}/slurmctld.pid
SlurmdPidFile={home}/slurmd.pid
SlurmctldLogFile={home}/slurmctld.log
SlurmdLogFile={home}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={int(memory_mb * 0.8)} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    for folder in ("state", "spool"):
        (home / folder).mkdir()


# Through sbatch: every stage of the recipe up to the export, and a job of each evaluation rule. The rest of the DAG
# (more methods and subjects through the same rules) would add only SLURM's status polling, minutes of it.
CLUSTER_TARGETS = ["results/export/model", "results/eval/base/yarn.csv", "results/eval/finetune/256k.csv",
                   "results/eval/retrieval/base_none.passkey.csv"]


@pytest.mark.integration
def test_test_config_through_sbatch_equals_a_local_run(slurm, request, tmp_path):
    """The cluster run starts first; the local run (the shared fixture, unless built already) computes meanwhile,
    while the executor waits between its status checks."""
    cluster = tmp_path / "slurm"
    start = time.monotonic()
    with open(tmp_path / "snakemake.out", "w+") as out:
        run = subprocess.Popen(snakemake_cmd("--configfile", str(ROOT / "config" / "test.yaml"), "--profile",
                                             str(ROOT / "tests" / "slurm-profile"), "--directory", str(cluster),
                                             *CLUSTER_TARGETS), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        local = request.getfixturevalue("test_config_run")
        returncode = run.wait(timeout=1200)
        out.seek(0)
        output = out.read()
    assert returncode == 0, output[-5000:]
    job_ids = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", output)
    logs = sorted((cluster / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"))
    print(f"through SLURM {time.monotonic() - start:.0f} s, {len(job_ids)} sbatch jobs")

    # Every heavy job went through sbatch and left a SLURM log named by its job id; the cheap ones ran here.
    assert len(job_ids) == len(re.findall(r"^rule \S+:$", output, flags=re.M)) > 10
    assert sorted(log.stem for log in logs) == sorted(job_ids)
    ran_on_slurm = {log.relative_to(cluster / ".snakemake" / "slurm_logs").parts[0][len("rule_"):] for log in logs}
    assert ran_on_slurm >= {"token_store", "pretrain_base", "search_128k", "finetune_128k", "search_256k",
                            "finetune_256k", "search_2048k", "recovery_short", "evaluate_base", "evaluate_finetune",
                            "evaluate_retrieval"}
    assert not ran_on_slurm & {"tokenizer", "plot_pretrain_loss", "export"}

    # The same numbers as the local run: perplexities (timings aside), passkeys, searched factors, fine-tuned weights.
    evaluations = sorted((cluster / "results" / "eval").rglob("*.csv"))
    assert len(evaluations) == 2 * 2 + 2  # perplexity and per-window NLL of two evaluations; passkeys and needles
    for evaluation in evaluations:
        ours, theirs = (pd.read_csv(root / evaluation.relative_to(cluster)) for root in (local, cluster))
        pd.testing.assert_frame_equal(theirs.drop(columns="seconds", errors="ignore"),
                                      ours.drop(columns="seconds", errors="ignore"))
    searches = sorted((cluster / "results" / "search").glob("*/factors.csv"))
    assert len(searches) == 4
    for factors in searches:
        assert np.array_equal(np.loadtxt(local / factors.relative_to(cluster)), np.loadtxt(factors)), factors
    from safetensors.torch import load_file

    for weights in sorted((local / "results" / "finetune").glob("*/model/model.safetensors")):
        a, b = load_file(weights), load_file(cluster / weights.relative_to(local))
        assert all(torch.equal(a[k], b[k]) for k in a), weights


def test_srun_starts_the_ranks_of_a_deepspeed_fine_tune(slurm, inputs):
    """The multi-node launch (launcher() with nodes > 1) on this one node: srun starts two ranks that form their
    process group from SLURM's variables, and they train the weights of one process."""
    check_two_ranks_train_the_weights_of_one(
        inputs, ("srun", "--nodes", "1", "--ntasks-per-node", "2", "--cpus-per-task", "1", sys.executable))

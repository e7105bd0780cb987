"""longrope.logs: a rule script's one set-up sends everything its job writes to the rule's log."""
import re
import subprocess
import sys

from conftest import ROOT

# A rule script in miniature: the package and transformers are imported before the log is set up, as in scripts/.
SCRIPT = """
import logging, os, subprocess, sys, warnings
from transformers.utils import logging as transformers_logging
from longrope.logs import to_rule_log

print("before the log")
to_rule_log(sys.argv[1], append=sys.argv[2] == "append")
print("a result")
logging.getLogger("longrope.training.loop").info("resuming from step %d", 5)
logging.getLogger("longrope.training.loop").debug("not shown")
transformers_logging.get_logger("transformers.modeling_utils").warning("a transformers warning")
warnings.warn("a Python warning")
os.write(2, b"a C extension's line\\n")
subprocess.run([sys.executable, "-c", "print('a child process')"])
raise RuntimeError("the job failed")
"""


def run(tmp_path, mode="new"):
    script = tmp_path / "rule.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(tmp_path / "rule.log"), mode], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_the_log_gets_prints_package_messages_third_party_output_and_the_traceback(tmp_path):
    done = run(tmp_path)
    assert done.returncode == 1 and done.stdout == "before the log\n" and done.stderr == ""
    log = (tmp_path / "rule.log").read_text()
    for line in ("a result", "a transformers warning", "UserWarning: a Python warning", "a C extension's line",
                 "a child process", "RuntimeError: the job failed"):
        assert line in log, log
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO longrope\.training\.loop: resuming from step 5$", log,
                     re.MULTILINE), log
    assert "not shown" not in log
    assert log.index("a result") < log.index("resuming from") < log.index("Traceback")


def test_a_resumed_job_appends_to_its_log(tmp_path):
    run(tmp_path)
    run(tmp_path, "append")
    assert (tmp_path / "rule.log").read_text().count("a result") == 2
    run(tmp_path)
    assert (tmp_path / "rule.log").read_text().count("a result") == 1

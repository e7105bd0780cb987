"""Where a job's messages go. The package logs through `logging.getLogger(__name__)` (the "longrope" hierarchy) and
configures no handler itself, so a program that embeds it routes or silences it; the rule scripts and
scripts/finetune.py send it, and everything else the job prints, to the rule's log.

May import: nothing of longrope.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def log_to(stream: TextIO, level: int = logging.INFO) -> None:
    """Show the package's messages of `level` and above on `stream`, each with its time and logger name."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    logger = logging.getLogger("longrope")
    logger.addHandler(handler)
    logger.setLevel(level)
    # A library that configures the root logger (lm-eval does) would otherwise print every message a second time.
    logger.propagate = False


def to_rule_log(path: str | os.PathLike, append: bool = False) -> TextIO:
    """Send all of this process's output to the rule's log at `path`, and the package's messages with it.

    The file descriptors 1 and 2 are pointed at the log, not only sys.stdout and sys.stderr: handlers made before
    this call (transformers' binds sys.stderr when it is imported, and the scripts import it first), C extensions
    (llama.cpp, torch) and child processes write there. `append` keeps what a resumed job's earlier runs wrote."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # what was written before belongs where it was going
    log = open(path, "a" if append else "w", buffering=1)
    for descriptor in (1, 2):
        os.dup2(log.fileno(), descriptor)
    sys.stdout = sys.stderr = log  # one line-buffered stream: print and tracebacks land in the order they happen
    log_to(log)
    return log

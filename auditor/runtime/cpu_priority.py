"""Background audits run on CPU time that generation does not want.

An audit on a CPU costs seconds of compute (2^n masked forward passes and an LP); generation costs
milliseconds per request. Where both share cores, the audit must lose every contest for a core, or
the users' latency pays for it. ``nice 10`` is not enough for that: under Linux's fair scheduler a
nice-10 thread still gets about a tenth of a contended core (weights 110 vs 1024), every scheduling
period. ``SCHED_IDLE`` gets a core only when nothing else wants it (weight 3), which is what
"an audit never slows a user's request" means on a shared machine, in principle. Measured
(bench/serving.py, 2 cores), ``idle`` did not beat ``nice``: a Python thread that holds the GIL
and then gets no core stalls the other threads of its process, here the auditor's HTTP threads,
so ``nice`` is the service's default and ``idle`` an option.

Linux applies a scheduling policy per thread and new threads inherit their creator's, so lowering
the auditor's queue thread lowers every engine thread it starts (and the threads those start),
while the threads serving HTTP (records, on-demand audits for compliance staff) keep the normal
policy. Lowering is always allowed without privileges; raising back is not attempted.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

__all__ = ["CpuPriority", "lower_current_thread"]

CpuPriority = Literal["idle", "nice", "normal"]
logger = logging.getLogger("auditor.runtime.cpu_priority")


def lower_current_thread(priority: CpuPriority, nice: int = 10) -> str:
    """Lower the calling thread's CPU priority; returns what was applied ("idle", "nice" or "normal").

    "idle" falls back to "nice" where ``SCHED_IDLE`` is unavailable (not Linux) or refused.
    "nice" changes the thread's nice value on Linux (where ``setpriority`` on a thread id is
    per-thread) and the process's elsewhere.
    """
    if priority not in ("idle", "nice", "normal"):
        raise ValueError(f"cpu priority must be idle, nice or normal, got {priority!r}")
    if priority == "normal":
        return "normal"
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError as error:  # e.g. a seccomp profile that forbids it
            logger.warning("SCHED_IDLE refused (%s); falling back to nice %d", error, nice)
    if nice <= 0:
        return "normal"
    try:
        if hasattr(os, "gettid"):
            os.setpriority(os.PRIO_PROCESS, os.gettid(), nice)  # Linux: one thread
        else:
            os.nice(nice)
        return "nice"
    except OSError as error:
        logger.warning("could not lower the CPU priority (%s)", error)
        return "normal"

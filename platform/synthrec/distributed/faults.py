"""Test-only fault injection for Ray Train workers, switched on by one environment variable.

`SYNTHREC_TEST_KILL_WORKER="<epoch>:<step>:<file>"`: the last rank, after that step of that
epoch, writes its process id to `<file>` and waits there for the test to SIGKILL it (a real
process death, as when a node goes away, not a raised exception). The file also marks the fault
as spent, so the restarted workers train on. Unset (always, outside tests) the hook is None
and the loop calls nothing.

Workers of an already running Ray do not see a variable set later in the driver, so the
driver forwards it to the Train workers' runtime env (`worker_env`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

ENV = "SYNTHREC_TEST_KILL_WORKER"
WAIT_S = 300


def worker_env() -> dict[str, str]:
    """The switch as env vars for the Train workers; empty when it is off."""
    value = os.environ.get(ENV)
    return {ENV: value} if value else {}


def step_hook(rank: int, world: int) -> Callable[[int, int], None] | None:
    """`hook(epoch, step)` for the last rank while the switch is on, else None."""
    spec = os.environ.get(ENV)
    if not spec or rank != world - 1:
        return None
    epoch_text, step_text, file = spec.split(":", 2)
    at, marker = (int(epoch_text), int(step_text)), Path(file)

    def hook(epoch: int, step: int) -> None:
        if (epoch, step) != at or marker.exists():
            return
        partial = marker.with_name(marker.name + ".partial")
        partial.write_text(str(os.getpid()))
        partial.replace(marker)  # the test never reads half a pid
        time.sleep(WAIT_S)
        raise RuntimeError(f"{ENV}: nobody killed worker pid {os.getpid()} in {WAIT_S} s")

    return hook

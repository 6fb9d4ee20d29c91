"""Launcher of the torch.distributed test ranks (``tests/_dist_worker.py``) as subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_dist_worker.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Launch:
    """``scenarios`` running on ``world`` ranks (started at once: several launches overlap);
    :meth:`results` waits for them and raises on a failure or after ``timeout`` seconds.

    Nothing outlives the launch: each rank also ends itself shortly before ``timeout`` (a
    watchdog thread), the first rank to fail makes the launcher kill the others at once (they
    would wait for it in a collective), and :meth:`kill` (the fixture's teardown) ends any rank
    still running. The ranks write their output to files, so no pipe can fill up and block."""

    def __init__(self, world: int, scenarios: list[str], timeout: float = 120.0):
        self.world, self.scenarios, self.timeout = world, scenarios, timeout
        self.tmp = tempfile.TemporaryDirectory()
        self.outs = [os.path.join(self.tmp.name, f"rank{r}.json") for r in range(world)]
        self.logs = [os.path.join(self.tmp.name, f"rank{r}.log") for r in range(world)]
        port = free_port()
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "NUMBA_NUM_THREADS": "1",
            "INFOLOSS_TEST_PORTS": ",".join(str(free_port()) for _ in range(4)),
            # each rank ends itself a little before the launcher gives up on it
            "INFOLOSS_TEST_DEADLINE": str(max(5.0, timeout - 5.0)),
        }
        self.deadline = time.monotonic() + timeout
        self.procs = []
        for r in range(world):
            with open(self.logs[r], "wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            WORKER,
                            str(r),
                            str(world),
                            str(port),
                            self.outs[r],
                            *scenarios,
                        ],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        self._results: list[dict[str, Any]] | None = None

    def kill(self) -> None:
        """End every rank still running, reap it, remove the run's files."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        if self._results is None:
            self.tmp.cleanup()

    def _log(self, r: int) -> str:
        with open(self.logs[r], "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def results(self) -> list[dict[str, Any]]:
        if self._results is not None:
            return self._results
        try:
            while True:
                codes = [p.poll() for p in self.procs]
                failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    r = failed[0]
                    log = self._log(r)
                    self.kill()
                    raise AssertionError(
                        f"rank {r} of {self.world} failed ({codes[r]}) in {self.scenarios}:\n{log}"
                    )
                if all(c == 0 for c in codes):
                    break
                if time.monotonic() > self.deadline:
                    logs = "\n".join(f"--- rank {r}:\n{self._log(r)}" for r in range(self.world))
                    self.kill()
                    raise AssertionError(
                        f"distributed run of {self.scenarios} on {self.world} ranks timed out "
                        f"after {self.timeout} s; the ranks' output:\n{logs}"
                    )
                time.sleep(0.05)
            results = []
            for o in self.outs:
                with open(o) as f:
                    results.append(json.load(f))
        finally:
            self.tmp.cleanup()
        self._results = results
        return results


def launch(world: int, scenarios: list[str], timeout: float = 120.0) -> list[dict[str, Any]]:
    """Run ``scenarios`` on ``world`` ranks; each rank's results."""
    return Launch(world, scenarios, timeout).results()

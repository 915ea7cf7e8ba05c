"""Start-up of ``natlab explore`` to a usable page (memory backend), beside natlab's own start-up.

Not a test: it prints figures and never asserts. The issue's aim is a usable
page within 2 s of ``natlab explore TOPOLOGY`` on the memory backend.

Each run starts ``python -m natlab explore TOPOLOGY --no-browser --port 0`` as a
fresh process (interpreter start and imports included), waits for the URL it
prints, then fetches everything the page needs before it can be used: the page,
its script and style sheet, the topology and the state. The figure is the time
from spawning the process to the last of those answers. The baseline, measured
in the same run and alternated with it, is ``python -m natlab --version``: the
interpreter and natlab's command line starting and exiting, which every command
pays; the difference is what the workbench itself costs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

PAGE = ("/", "/static/app.js", "/static/app.css", "/api/topology", "/api/state")
AIM_SECONDS = 2.0


@dataclass(frozen=True)
class ExploreFigures:
    topology: str
    runs: int
    usable_s: float
    """Median seconds from spawning ``natlab explore`` to the page's last answer."""
    usable_min_s: float
    usable_max_s: float
    url_s: float
    """Median seconds to the printed URL."""
    baseline_s: float
    """Median seconds of ``python -m natlab --version`` (the baseline)."""
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)

    @property
    def workbench_s(self) -> float:
        """What the workbench adds to a natlab command's own start-up."""
        return self.usable_s - self.baseline_s


def _baseline() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "natlab", "--version"], capture_output=True, check=True, timeout=60)
    return time.perf_counter() - t0


def _explore(topology: Path) -> tuple[float, float]:
    """(seconds to the printed URL, seconds to a usable page) of one fresh ``natlab explore``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "natlab", "explore", str(topology), "--no-browser", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = next((line.strip() for line in proc.stdout if "token=" in line), "")
        if not url:
            proc.wait(30)
            raise RuntimeError(f"natlab explore printed no URL: {proc.stderr.read() if proc.stderr else ''}")
        printed = time.perf_counter() - t0
        base, token = url.split("/?token=")
        for path in PAGE:
            req = urllib.request.Request(f"{base}{path}?token={token}", headers={"X-Natlab-Token": token})
            with urllib.request.urlopen(req, timeout=30) as answer:
                answer.read()
        return printed, time.perf_counter() - t0
    finally:
        proc.terminate()  # the process this run started, by its handle
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(topology: Path, runs: int = 5, progress: Optional[Callable[[str], None]] = None) -> ExploreFigures:
    """``runs`` start-ups of each, alternated so that both see the same machine."""
    usable, printed, baseline = [], [], []
    for n in range(runs):
        if progress:
            progress(f"run {n + 1} of {runs}")
        baseline.append(_baseline())
        url_s, page_s = _explore(topology)
        printed.append(url_s)
        usable.append(page_s)
    return ExploreFigures(topology=str(topology), runs=runs, usable_s=statistics.median(usable),
                          usable_min_s=min(usable), usable_max_s=max(usable), url_s=statistics.median(printed),
                          baseline_s=statistics.median(baseline), samples=usable, baseline_samples=baseline)

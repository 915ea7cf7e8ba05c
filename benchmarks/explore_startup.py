"""Start-up of `natlab explore` to a usable page, on the memory backend: a figure, not a test.

    .venv/bin/python benchmarks/explore_startup.py [TOPOLOGY] [--runs 5]

Each run starts ``python -m natlab explore TOPOLOGY --no-browser --port 0`` as a
fresh process (interpreter start and imports included), waits for the URL it
prints, then fetches everything the page needs before it can be used: the page,
its script and style sheet, the topology and the state. The figure is the time
from spawning the process to the last of those answers; the median of the runs is
printed beside the fastest and slowest, and the time to the printed URL.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = ("/", "/static/app.js", "/static/app.css", "/api/topology", "/api/state")


def one_run(topology: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "natlab", "explore", str(topology), "--no-browser", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        url = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            if "token=" in line:
                url = line.strip()
                break
        if not url:
            raise SystemExit(f"natlab explore printed no URL: {proc.stderr.read() if proc.stderr else ''}")
        printed = time.perf_counter() - t0
        base, token = url.split("/?token=")
        for path in PAGE:
            req = urllib.request.Request(f"{base}{path}?token={token}", headers={"X-Natlab-Token": token})
            with urllib.request.urlopen(req, timeout=10) as answer:
                answer.read()
        return printed, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", default=str(REPO / "topologies" / "two-homes.yaml"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [one_run(Path(args.topology)) for _ in range(args.runs)]
    usable = [u for _, u in runs]
    printed = statistics.median(p for p, _ in runs)
    print(f"natlab explore {Path(args.topology).name} (memory): usable page after "
          f"{statistics.median(usable):.2f} s median of {len(runs)} "
          f"(min {min(usable):.2f}, max {max(usable):.2f}); URL printed after {printed:.2f} s")


if __name__ == "__main__":
    main()

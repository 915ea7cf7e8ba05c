"""Does this kernel hold the session cache? Tried once per process, in a network namespace of
its own (``unshare --net``: gone when the probe exits), never in the caller's.

The probe makes the real table (:func:`~natlab.datapaths.kernelcache.nft.table_script`),
installs and forgets one entry and lists ``seen``: nf_tables, concatenated keys, maps
with timeouts, dynamic sets with counters, payload mangling and ``notrack`` are all
there, or the reason is what nft said.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from typing import Optional

TIMEOUT = 20.0
REFUSED = 3
"""The probe's exit code when the kernel refused the table; any other failure means the
probe could not be tried (``unshare`` not permitted: a container without CAP_SYS_ADMIN)."""


def check() -> int:
    """In the probe's own namespace: build the table and one entry; exit 0 if all went in."""
    from natlab.datapaths.kernelcache import nft
    from natlab.datapaths.kernelcache.lib import Nft
    from natlab.engine.fastpath import FastEntry
    from natlab.engine.types import Side

    spec = nft.TableSpec("probe", "lo", ("lo",), 0x4E4C)
    ctx = Nft()
    entry = FastEntry(Side.INSIDE, 17, 0xC0A80102, 5000, 0xCB007164, 7000, 0xCB007101, 40000,
                      0xCB007164, 7000, 1.0)
    try:
        ctx.run(nft.table_script(spec))
        ctx.run(nft.install_script([(1, entry, 500)]))
        ctx.run(nft.forget_script([(1, entry)]))
        nft.parse_seen(ctx.text(nft.list_seen()))
    except Exception as err:  # noqa: BLE001 - reported, the probe's whole point
        print(getattr(err, "message", str(err)), file=sys.stderr)
        return REFUSED
    return 0


@functools.lru_cache(maxsize=1)
def kernel_missing() -> Optional[str]:
    """Why this kernel cannot hold the cache, or None; None as well when it cannot be tried
    here (not root: the lab's own checks say so first; no ``unshare`` allowed: a container)."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return None
    argv = [unshare, "--net", "--", sys.executable, "-P", "-c",
            "import sys; from natlab.datapaths.kernelcache.probe import check; sys.exit(check())"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"the kernel probe did not run: {err}"
    said = (done.stderr.strip().splitlines() or ["no output"])[-1]
    if done.returncode == REFUSED:
        return f"this kernel cannot hold the session cache (nf_tables maps with timeouts and counters): {said}"
    if done.returncode != 0 and "unshare" in said:
        return None  # no namespace of its own to try in (a container): the gateway says, if it must
    if done.returncode != 0:
        return f"the kernel probe failed: {said}"
    return None

"""The thin cffi binding (API mode) over ``csrc/*.c``: built once, loaded lazily.

Theory of operation
-------------------
:func:`load` returns the compiled module ``(ffi, lib)``. It is built by
``install.sh --dpdk`` (``python -m natlab.datapaths.dpdk.binding``), or on first
use, against ``pkg-config --cflags --libs libdpdk``, into :func:`build_dir`
under a name holding a hash of the C source and the flags (a changed source is
a new module; nothing stale is loaded). The build goes to a temporary folder
and is renamed into place, so two gateways starting at once do not collide.

What is missing is said by :func:`missing` (no cffi, no compiler, no
libdpdk-dev), before anything is built; the Pythonic layer over this is
:mod:`natlab.datapaths.dpdk.ports`.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from natlab.errors import BackendUnavailable

CSRC = Path(__file__).with_name("csrc")
SOURCES = tuple(CSRC / name for name in ("nl_base.c", "nl_table.c", "nl_ports.c", "nl_workers.c"))
"""Compiled as one unit, in this order: types and the EAL, the table, ports, workers."""
MODULE = "_natlab_dpdk"
BUILD_ENV = "NATLAB_DPDK_BUILD_DIR"
INSTALL_HINT = "bash install.sh --dpdk (apt: dpdk-dev libdpdk-dev pkg-config; pip: natlab[dpdk])"

CDEF = """
struct nl_entry { uint8_t side, proto; uint32_t src, dst; uint16_t sport, dport;
                  uint32_t new_src, new_dst; uint16_t new_sport, new_dport; double expires;
                  uint16_t out_port, mtu; uint8_t eth[12]; };
struct nl_seen { uint8_t side, proto; uint32_t src, dst; uint16_t sport, dport;
                 double last_seen, expires; uint64_t packets, bytes; };
struct nl_slow { uint16_t port, reason; uint32_t len; const uint8_t *data; };
struct nl_stats { uint64_t rx, tx, tx_dropped, fast_hits, misses, expired, other, table_full,
                  installs, removes, clears, own_echo, not_for_us, alloc_failed;
                  uint32_t entries, capacity; };
struct nl_ctx;
const char *nl_last_error(void);
double nl_now(void);
int nl_eal_init(int argc, char **argv);
int nl_eal_cleanup(void);
int nl_port_count(void);
int nl_dev_probe(const char *devargs);
int nl_dev_remove(const char *name);
uint32_t nl_last_rx(struct nl_ctx *c);
uint32_t nl_mbufs_free(struct nl_ctx *c);
int nl_pools_packed(struct nl_ctx *c);
void nl_pool_per_port(struct nl_ctx *c, uint32_t n_mbufs);
int nl_port_id(const char *name);
struct nl_ctx *nl_open(uint32_t capacity);
int nl_open_pool(struct nl_ctx *c, uint32_t n_mbufs);
int nl_fast_frame(struct nl_ctx *c, uint8_t side, const uint8_t *mac, uint8_t *f, uint32_t len,
                  double now, uint16_t *reason);
int nl_port_add(struct nl_ctx *c, uint16_t port_id, uint8_t side, uint16_t rx_desc, uint16_t tx_desc);
void nl_port_mac(struct nl_ctx *c, int index, uint8_t *out);
int nl_poll(struct nl_ctx *c, struct nl_slow *slow, int max, double now);
void nl_release(struct nl_ctx *c);
int nl_send(struct nl_ctx *c, int index, const uint8_t *frame, uint32_t len);
void nl_flush(struct nl_ctx *c);
int nl_fast_add(struct nl_ctx *c, const struct nl_entry *e);
int nl_fast_del(struct nl_ctx *c, uint8_t side, uint8_t proto, uint32_t src, uint16_t sport,
                uint32_t dst, uint16_t dport, struct nl_seen *out);
int nl_fast_collect(struct nl_ctx *c, struct nl_seen *out, int max, int *more);
void nl_fast_clear(struct nl_ctx *c);
void nl_stats(struct nl_ctx *c, struct nl_stats *out);
void nl_port_stats(struct nl_ctx *c, int index, uint64_t *out5);
void nl_close(struct nl_ctx *c);
struct nl_worker_stats { uint64_t rx, handoff_enq, handoff_deq, handoff_drop, snat, dnat, misses, expired,
                         other, no_owner, slow_enq, slow_drop, tx_drop, cmds, idle_sleeps, misowned,
                         idle_us, wakeups;
                         uint32_t entries, table_full; };
struct nl_mw;
struct nl_mw *nl_mw_open(struct nl_ctx *base, int n_workers, uint32_t capacity, const int *port_worker);
int nl_mw_start(struct nl_mw *mw);
void nl_mw_stop(struct nl_mw *mw);
int nl_mw_owner(struct nl_mw *mw, uint8_t proto, uint32_t inside_addr, uint16_t inside_port);
int nl_owner_of(int n, uint8_t proto, uint32_t inside_addr, uint16_t inside_port);
int nl_mw_poll(struct nl_mw *mw, struct nl_slow *slow, int max);
void nl_mw_release(struct nl_mw *mw);
int nl_mw_send(struct nl_mw *mw, int index, const uint8_t *frame, uint32_t len);
int nl_mw_install(struct nl_mw *mw, const struct nl_entry *e, int owner, uint16_t external_port);
int nl_mw_del(struct nl_mw *mw, int owner, const struct nl_entry *key, struct nl_seen *out);
int nl_mw_collect(struct nl_mw *mw, int owner, struct nl_seen *out, int max, int *more);
int nl_mw_clear(struct nl_mw *mw);
void nl_mw_stats(struct nl_mw *mw, int owner, struct nl_worker_stats *out);
int nl_mw_lcore(struct nl_mw *mw, int owner);
void nl_mw_set_busy(struct nl_mw *mw, int busy);
int nl_mw_barrier(struct nl_mw *mw);
int nl_mw_slow_fd(struct nl_mw *mw);
int nl_mw_nap_begin(struct nl_mw *mw);
void nl_mw_nap_end(struct nl_mw *mw);
uint64_t nl_mw_main_wakeups(struct nl_mw *mw);
"""

_loaded: Optional[tuple[Any, Any]] = None


def pkg_config() -> Optional[tuple[list[str], list[str]]]:
    """libdpdk's compile and link flags, or None when pkg-config or libdpdk-dev is missing."""
    if shutil.which("pkg-config") is None:
        return None
    try:
        cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True,
                                text=True, timeout=30)
        libs = subprocess.run(["pkg-config", "--libs", "libdpdk"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if cflags.returncode or libs.returncode:
        return None
    return cflags.stdout.split(), libs.stdout.split()


def missing() -> Optional[str]:
    """What keeps the binding from being built or loaded here (None: nothing)."""
    if importlib.util.find_spec("cffi") is None:
        return "the Python package cffi is not installed (pip install 'natlab[dpdk]')"
    if _built_path() is not None:
        return None
    if pkg_config() is None:
        return "libdpdk-dev is not installed (pkg-config finds no libdpdk; apt-get install dpdk-dev libdpdk-dev pkg-config)"
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler to build the DPDK binding (apt-get install gcc)"
    return None


def _flags_key() -> str:
    flags = pkg_config()
    text = b"".join(p.read_bytes() for p in SOURCES) + CDEF.encode() + repr(flags).encode() + sys.version.encode()
    return hashlib.sha256(text).hexdigest()[:16]


def build_dir() -> Path:
    """Where the compiled module lives: $NATLAB_DPDK_BUILD_DIR, the package's _build if
    writable, else ~/.cache/natlab/dpdk."""
    if os.environ.get(BUILD_ENV):
        return Path(os.environ[BUILD_ENV])
    here = Path(__file__).with_name("_build")
    try:
        here.mkdir(exist_ok=True)
        if os.access(here, os.W_OK):
            return here
    except OSError:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "natlab" / "dpdk"
    return cache


def _target() -> Path:
    return build_dir() / _flags_key()


def _built_path() -> Optional[Path]:
    folder = _target() if pkg_config() is not None else None
    if folder is None or not folder.is_dir():
        return None
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / f"{MODULE}{suffix}"
        if candidate.exists():
            return candidate
    return None


def build(verbose: bool = False) -> Path:
    """Compile the module (if it is not there yet); its path."""
    found = _built_path()
    if found is not None:
        return found
    why = missing()
    if why:
        raise BackendUnavailable("cannot build the DPDK binding", got=why, hint=INSTALL_HINT)
    import cffi

    cflags, libs = pkg_config() or ([], [])
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source(MODULE, "".join(f'#include "{p.name}"\n' for p in SOURCES), include_dirs=[str(CSRC)],
                   extra_compile_args=[*cflags, "-O2", "-Wno-unused-parameter",
                                       "-Werror=implicit-function-declaration"],  # a missing header is an error
                   extra_link_args=libs)
    target = _target()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        try:
            ffi.compile(tmpdir=tmp, verbose=verbose)
        except Exception as err:  # noqa: BLE001 - distutils/setuptools raise many kinds
            raise BackendUnavailable("building the DPDK binding failed", got=str(err),
                                     hint=INSTALL_HINT) from err
        staged = Path(tmp) / "out"
        staged.mkdir()
        for built in Path(tmp).glob(f"{MODULE}*.so"):
            shutil.move(str(built), staged / built.name)
        try:
            staged.rename(target)
        except OSError:
            if not target.is_dir():  # someone else's rename won: fine
                raise
    found = _built_path()
    if found is None:
        raise BackendUnavailable("building the DPDK binding left no module", got=str(target),
                                 hint=INSTALL_HINT)
    return found


def load() -> tuple[Any, Any]:
    """``(ffi, lib)`` of the compiled module, building it first if needed."""
    global _loaded
    if _loaded is None:
        path = build()
        spec = importlib.util.spec_from_file_location(MODULE, path)
        if spec is None or spec.loader is None:
            raise BackendUnavailable("cannot load the DPDK binding", got=str(path), hint=INSTALL_HINT)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ImportError as err:
            raise BackendUnavailable("cannot load the DPDK binding", got=str(err), hint=INSTALL_HINT) from err
        _loaded = (module.ffi, module.lib)
    return _loaded


def main() -> int:
    """``python -m natlab.datapaths.dpdk.binding``: build the module (install.sh --dpdk)."""
    try:
        print(build(verbose="-v" in sys.argv[1:]))
    except BackendUnavailable as err:
        print(f"natlab: {err.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

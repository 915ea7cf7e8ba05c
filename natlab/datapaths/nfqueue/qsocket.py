"""One NFQUEUE's netlink socket: bind, read packets in batches, send verdicts in one syscall.

Theory of operation
-------------------
Pure Python on the ``socket`` module (``AF_NETLINK``/``NETLINK_NETFILTER``),
plus libc's ``recvmmsg(2)`` through ``ctypes`` for batched reads; nothing to
compile, no library beyond libc. Why not C: ``natlab bench nat`` puts a bare
pass-through on this binding at or above one on netfilterqueue 1.1.0 (C) for UDP
pkt/s and several times it for TCP (GSO); reading a message costs one ``struct``
call once its layout is known (:class:`~natlab.datapaths.nfqueue.nfnetlink.Layout`,
a fraction of a microsecond), and the engine, not the binding, is most of a
translated packet's time. A cffi binding would save about a microsecond a packet
and add a compiler to every install; fnfqueue has no ``NFQA_SKB_INFO``.

- :meth:`QueueSocket.open` binds the queue with one acked config message
  (:func:`~natlab.datapaths.nfqueue.nfnetlink.bind_message`: whole packets,
  GSO super-packets unsegmented, fail-open explicitly off) and raises
  :class:`~natlab.errors.BackendUnavailable` with the kernel's errno if the
  kernel refuses.
- :meth:`QueueSocket.receive` takes up to :data:`BATCH` messages with one
  ``recvmmsg`` into preallocated buffers of :data:`RECV_BUFFER` bytes each (a
  whole 64 KiB packet plus its attributes), without blocking. Each netlink
  receive is one kernel message; a message that is not a packet (an error
  answering a verdict) is counted and skipped.
- :meth:`QueueSocket.send` sends many verdict messages as one gathered
  ``sendmsg``: the kernel's netlink receive handles each message of a buffer in
  turn. Payloads are not copied into one buffer; the iovec points at them.

A dead process's socket closes; the kernel then destroys its queues, and with
no listener and no ``--queue-bypass`` the rules' packets are dropped (fail closed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
from typing import Iterable, Optional

from natlab.datapaths.nfqueue import nfnetlink as nfq
from natlab.errors import BackendUnavailable

BATCH = 64
"""Messages read per ``recvmmsg`` (and so packets handled per readable queue before the
daemon's loop looks at control clients and timers again)."""
RECV_BUFFER = nfq.COPY_RANGE + 4096
"""One netlink message: a whole packet plus its metadata attributes."""
SOCK_RCVBUF = 16 << 20
"""Socket receive buffer (``SO_RCVBUFFORCE`` as root, else capped at ``net.core.rmem_max``)."""
SOCK_SNDBUF = 8 << 20
"""Send buffer: a gathered verdict send must fit in it (64 payloads of 64 KiB at most)."""
SEND_CHUNK = 1 << 20
"""Bytes per ``sendmsg`` at most (and :data:`MAX_IOV` buffers)."""
MAX_IOV = 1000
SO_RCVBUFFORCE, SO_SNDBUFFORCE = 33, 32
MSG_DONTWAIT = 0x40


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IOVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_recvmmsg = None


def _libc_recvmmsg():
    global _recvmmsg
    if _recvmmsg is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.recvmmsg
        fn.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        fn.restype = ctypes.c_int
        _recvmmsg = fn
    return _recvmmsg


def unavailable() -> Optional[str]:
    """Why this binding cannot run here (None: it can)."""
    if not hasattr(socket, "AF_NETLINK"):
        return "no AF_NETLINK sockets (NFQUEUE needs Linux)"
    try:
        _libc_recvmmsg()
    except (OSError, AttributeError) as err:
        return f"libc has no recvmmsg ({err})"
    return None


class QueueSocket:
    """The netlink socket bound to one queue number."""

    def __init__(self, queue: int, *, max_len: int, copy_range: int = nfq.COPY_RANGE,
                 gso: bool = True, batch: int = BATCH) -> None:
        self.queue = queue
        self.queue_be = socket.htons(queue)
        self.max_len = max_len
        self.copy_range = copy_range
        self.gso = gso
        self.batch = batch
        self.sock: Optional[socket.socket] = None
        self.errors = 0
        """Error messages the kernel sent back (a verdict it could not apply)."""
        self.last_error = 0
        self.overruns = 0
        """Receives that reported ENOBUFS: the socket buffer was full and the kernel dropped packets."""
        self.sends = 0
        """``sendmsg`` calls made for verdicts."""
        self._buf = bytearray(RECV_BUFFER * batch)
        self._view = memoryview(self._buf)
        self._msgs = (_MMsgHdr * batch)()
        self._iovs = (_IOVec * batch)()
        self._recvmmsg = None
        self._lengths = struct.Struct("=" + "56xI4x" * batch)  # msg_len of each mmsghdr
        assert ctypes.sizeof(_MMsgHdr) == 64 and _MMsgHdr.msg_len.offset == 56
        self._msgs_view = memoryview(self._msgs).cast("B")
        self._early: list[bytes] = []

    # --- setup ----------------------------------------------------------------------

    def open(self) -> "QueueSocket":
        self._recvmmsg = _libc_recvmmsg()
        base = ctypes.addressof((ctypes.c_char * len(self._buf)).from_buffer(self._buf))
        for i in range(self.batch):
            self._iovs[i].iov_base = base + i * RECV_BUFFER
            self._iovs[i].iov_len = RECV_BUFFER
            hdr = self._msgs[i].msg_hdr
            hdr.msg_iov = ctypes.pointer(self._iovs[i])
            hdr.msg_iovlen = 1
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfq.NETLINK_NETFILTER)
        try:
            sock.bind((0, 0))
            _set_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, SOCK_RCVBUF)
            _set_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, SOCK_SNDBUF)
            self.sock = sock
            self._configure(nfq.bind_message(self.queue, copy_range=self.copy_range,
                                             max_len=self.max_len, gso=self.gso, seq=1), seq=1)
        except BaseException:
            sock.close()
            self.sock = None
            raise
        sock.setblocking(False)
        return self

    def _configure(self, message: bytes, seq: int) -> None:
        """Send an acked config message and wait for its answer (packets meanwhile are kept)."""
        assert self.sock is not None
        self.sock.settimeout(5.0)
        self.sock.send(message)
        while True:
            try:
                n = self.sock.recv_into(self._view[:RECV_BUFFER])
            except socket.timeout:
                raise BackendUnavailable(f"the kernel did not answer the bind of NFQUEUE {self.queue}",
                                         hint="is nfnetlink_queue loaded (modprobe nfnetlink_queue)?") from None
            for off, length, kind in nfq.messages(self._buf, 0, n):
                if kind == nfq.NLMSG_ERROR and _seq(self._buf, off) == seq:
                    code = -nfq.error_of(self._buf, off)
                    if code:
                        raise BackendUnavailable(
                            f"the kernel refused to bind NFQUEUE {self.queue}",
                            got=f"{errno.errorcode.get(code, code)}: {os.strerror(code)}",
                            hint="another process may hold this queue (EPERM), or nfnetlink_queue is missing")
                    return
                if kind == nfq.PACKET_TYPE:  # a queue left by a killed gateway: its rules send already
                    self._early.append(bytes(self._buf[off:off + length]))

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    # --- packets -----------------------------------------------------------------------

    def receive(self) -> list[tuple[memoryview, int, int]]:
        """Up to :attr:`batch` messages waiting, without blocking: (buffer, offset, end) each."""
        out: list[tuple[memoryview, int, int]] = []
        if self._early:
            out = [(memoryview(raw), 0, len(raw)) for raw in self._early]
            self._early = []
        n = self._recvmmsg(self.sock.fileno(), self._msgs, self.batch, MSG_DONTWAIT, None)
        if n < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EINTR):
                return out
            if code == errno.ENOBUFS:
                self.overruns += 1
                return out
            raise OSError(code, os.strerror(code))
        view = self._view
        lengths = self._lengths.unpack_from(self._msgs_view)
        for i in range(n):
            start = i * RECV_BUFFER
            out.append((view, start, start + lengths[i]))
        return out

    def send(self, messages: Iterable[tuple]) -> list[tuple]:
        """Send verdict messages (each a tuple of its parts) in as few ``sendmsg`` as fit.

        Returns the messages that could not be sent, even one by one (none, normally).
        """
        assert self.sock is not None
        failed: list[tuple] = []
        chunk: list = []
        members: list[tuple] = []
        size = 0
        for message in messages:
            n = sum(map(len, message))
            if chunk and (size + n > SEND_CHUNK or len(chunk) + len(message) > MAX_IOV):
                failed += self._sendmsg(chunk, members)
                chunk, members, size = [], [], 0
            chunk.extend(message)
            members.append(message)
            size += n
        if chunk:
            failed += self._sendmsg(chunk, members)
        return failed

    def _sendmsg(self, parts: list, members: list[tuple]) -> list[tuple]:
        self.sends += 1
        try:
            self.sock.sendmsg(parts)
            return []
        except OSError:
            if len(members) == 1:
                return members
        failed = []
        for message in members:  # one by one: the kernel may take the smaller sends
            self.sends += 1
            try:
                self.sock.sendmsg(list(message))
            except OSError:
                failed.append(message)
        return failed

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            self.sock.setblocking(True)
            self.sock.send(nfq.unbind_message(self.queue))
        except OSError:
            pass  # closing the socket unbinds too
        self.sock.close()
        self.sock = None


def _seq(buf, off: int) -> int:
    return int.from_bytes(buf[off + 8:off + 12], "little")


def _set_buffer(sock: socket.socket, force: int, plain: int, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)  # root: past net.core.[rw]mem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)

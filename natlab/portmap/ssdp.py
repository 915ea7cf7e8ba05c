"""SSDP discovery (UPnP Device Architecture 1.1 section 1.3): M-SEARCH in, answers out.

Theory of operation: ``parse_search`` reads one
datagram sent to 239.255.255.250:1900 (or unicast to port 1900) and returns an
``MSearch`` or ``SsdpIgnored`` (never raises); ``answers`` lists the unicast
200 OK responses for an IGD whose device tree ``upnp_desc`` describes. Search
targets answered: ``ssdp:all`` (every device and service), ``upnp:rootdevice``,
``uuid:...`` of each device, and device or service types at or below the
device's version (the response echoes the version asked for, section 1.3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional, Union

from natlab.portmap import upnp_desc
from natlab.portmap.upnp_desc import UPNP_ORG

MULTICAST_GROUP = "239.255.255.250"
PORT = 1900
MAX_DATAGRAM = 2048
MAX_AGE = 1800
SERVER = "Linux/natlab UPnP/1.1 natlab-portmap/0.1"
CONFIG_ID = 1


class SsdpIgnored(str, Enum):
    """Why a datagram gets no answer (each is counted)."""

    TOO_LARGE = "too-large"
    NOT_A_SEARCH = "not-a-search"
    BAD_MAN = "bad-man"
    NO_ST = "no-st"
    BAD_MX = "bad-mx"
    NO_MATCH = "no-match"


@dataclass(frozen=True)
class MSearch:
    """A search: target, MX (None when absent, as in unicast searches), headers."""

    st: str
    mx: Optional[int]
    headers: tuple[tuple[str, str], ...] = ()

    def emit(self, host: str = f"{MULTICAST_GROUP}:{PORT}") -> bytes:
        lines = ["M-SEARCH * HTTP/1.1", f"HOST: {host}", 'MAN: "ssdp:discover"']
        if self.mx is not None:
            lines.append(f"MX: {self.mx}")
        lines.append(f"ST: {self.st}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_headers(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The start line and the (upper-cased name, value) header pairs."""
    lines = text.replace("\r\n", "\n").split("\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip().upper(), value.strip()))
    return lines[0].strip(), headers


def parse_search(data: bytes) -> Union[MSearch, SsdpIgnored]:
    """An M-SEARCH, or why the datagram is ignored (MX over 5 counts as 5)."""
    if len(data) > MAX_DATAGRAM:
        return SsdpIgnored.TOO_LARGE
    start, headers = parse_headers(data.decode("latin-1"))
    if start.split() != ["M-SEARCH", "*", "HTTP/1.1"]:
        return SsdpIgnored.NOT_A_SEARCH
    fields = dict(headers)
    if fields.get("MAN", "").strip('"') != "ssdp:discover":
        return SsdpIgnored.BAD_MAN
    st = fields.get("ST", "")
    if not st:
        return SsdpIgnored.NO_ST
    mx: Optional[int] = None
    if "MX" in fields:
        if not fields["MX"].isdigit() or int(fields["MX"]) < 1:
            return SsdpIgnored.BAD_MX
        mx = min(5, int(fields["MX"]))
    return MSearch(st, mx, tuple(headers))


def targets(uuid: str, igd_version: int) -> tuple[tuple[str, str], ...]:
    """Every (ST, USN) the device answers ``ssdp:all`` with (section 1.3.3)."""
    root, wan, conn = upnp_desc.device_uuids(uuid)
    igd, wan_type, conn_type = upnp_desc.device_types(igd_version)
    cfg = upnp_desc.WAN_COMMON_INTERFACE_CONFIG.service_type(igd_version)
    ipc = upnp_desc.WAN_IP_CONNECTION.service_type(igd_version)
    return (
        ("upnp:rootdevice", f"uuid:{root}::upnp:rootdevice"),
        (f"uuid:{root}", f"uuid:{root}"), (igd, f"uuid:{root}::{igd}"),
        (f"uuid:{wan}", f"uuid:{wan}"), (wan_type, f"uuid:{wan}::{wan_type}"),
        (cfg, f"uuid:{wan}::{cfg}"),
        (f"uuid:{conn}", f"uuid:{conn}"), (conn_type, f"uuid:{conn}::{conn_type}"),
        (ipc, f"uuid:{conn}::{ipc}"),
    )


def _type_version(st: str) -> Optional[tuple[str, int]]:
    prefix, _, version = st.rpartition(":")
    if st.startswith(f"{UPNP_ORG}:") and version.isdigit():
        return prefix, int(version)
    return None


def matching(st: str, uuid: str, igd_version: int) -> tuple[tuple[str, str], ...]:
    """The (ST, USN) pairs answering a search for ``st``."""
    every = targets(uuid, igd_version)
    if st == "ssdp:all":
        return every
    asked = _type_version(st)
    found = []
    for target, usn in every:
        offered = _type_version(target)
        if target == st:
            found.append((target, usn))
        elif asked and offered and asked[0] == offered[0] and asked[1] <= offered[1]:
            found.append((st, usn.replace(target, st)))
    return tuple(found)


def answer(st: str, usn: str, location: str, boot_id: int) -> bytes:
    """One 200 OK search response (section 1.3.3)."""
    lines = ["HTTP/1.1 200 OK", f"CACHE-CONTROL: max-age={MAX_AGE}", "EXT:",
             f"LOCATION: {location}", f"SERVER: {SERVER}", f"ST: {st}", f"USN: {usn}",
             f"BOOTID.UPNP.ORG: {boot_id}", f"CONFIGID.UPNP.ORG: {CONFIG_ID}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def location(inside_address: str) -> str:
    return f"http://{inside_address}:{upnp_desc.HTTP_PORT}{upnp_desc.ROOT_DESC_PATH}"

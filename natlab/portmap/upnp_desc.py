"""UPnP IGD description documents: rootDesc.xml and the two SCPDs.

Theory of operation. The services are tables (``SERVICES``): each action names
its in and out arguments and the state variable each relates to; the SCPD
XML is rendered from the tables, and ``serve_upnp`` validates SOAP calls
against the same tables, so the documents and the behaviour cannot disagree.

The device tree is the one the IGD standard fixes (InternetGatewayDevice:N >
WANDevice:N > WANConnectionDevice:N), with WANCommonInterfaceConfig:1 in the
WANDevice and WANIPConnection:N in the WANConnectionDevice, N being 1 or 2.
The three UUIDs are derived from one (``device_uuids``). Eventing (GENA) is
not offered: the eventSubURLs are listed because the schema needs them, and
the gateway answers SUBSCRIBE with 501 (:mod:`natlab.gateway.portmap_shell`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from xml.sax.saxutils import escape

HTTP_PORT = 5000
ROOT_DESC_PATH = "/rootDesc.xml"
UPNP_ORG = "urn:schemas-upnp-org"


@dataclass(frozen=True)
class StateVariable:
    name: str
    data_type: str
    allowed: tuple[str, ...] = ()
    events: bool = False


@dataclass(frozen=True)
class Action:
    """An action: in and out arguments as (argument name, state variable name)."""

    name: str
    ins: tuple[tuple[str, str], ...] = ()
    outs: tuple[tuple[str, str], ...] = ()
    since: int = 1
    """The service version that added the action (IGD:2 ones are 2)."""

    @property
    def in_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.ins)


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its type name, URLs and tables."""

    name: str
    service_id: str
    scpd_path: str
    control_path: str
    event_path: str
    actions: tuple[Action, ...]
    variables: tuple[StateVariable, ...]
    fixed_version: Optional[int] = None
    """WANCommonInterfaceConfig stays :1 in IGD:2."""

    def service_type(self, igd_version: int) -> str:
        return f"{UPNP_ORG}:service:{self.name}:{self.fixed_version or igd_version}"

    def action(self, name: str, igd_version: int) -> Optional[Action]:
        version = self.fixed_version or igd_version
        return next((a for a in self.actions if a.name == name and a.since <= version), None)


_MAPPING_KEY = (("NewRemoteHost", "RemoteHost"), ("NewExternalPort", "ExternalPort"),
                ("NewProtocol", "PortMappingProtocol"))
_MAPPING_VALUE = (("NewInternalPort", "InternalPort"), ("NewInternalClient", "InternalClient"),
                  ("NewEnabled", "PortMappingEnabled"),
                  ("NewPortMappingDescription", "PortMappingDescription"),
                  ("NewLeaseDuration", "PortMappingLeaseDuration"))
_RANGE = (("NewStartPort", "ExternalPort"), ("NewEndPort", "ExternalPort"),
          ("NewProtocol", "PortMappingProtocol"), ("NewManage", "A_ARG_TYPE_Manage"))

WAN_IP_CONNECTION = ServiceSpec(
    "WANIPConnection", "urn:upnp-org:serviceId:WANIPConn1", "/WANIPCn.xml", "/ctl/IPConn",
    "/evt/IPConn",
    (
        Action("GetConnectionTypeInfo", outs=(("NewConnectionType", "ConnectionType"),
               ("NewPossibleConnectionTypes", "PossibleConnectionTypes"))),
        Action("GetStatusInfo", outs=(("NewConnectionStatus", "ConnectionStatus"),
               ("NewLastConnectionError", "LastConnectionError"), ("NewUptime", "Uptime"))),
        Action("GetExternalIPAddress", outs=(("NewExternalIPAddress", "ExternalIPAddress"),)),
        Action("GetGenericPortMappingEntry",
               ins=(("NewPortMappingIndex", "PortMappingNumberOfEntries"),),
               outs=_MAPPING_KEY + _MAPPING_VALUE),
        Action("GetSpecificPortMappingEntry", ins=_MAPPING_KEY, outs=_MAPPING_VALUE),
        Action("AddPortMapping", ins=_MAPPING_KEY + _MAPPING_VALUE),
        Action("DeletePortMapping", ins=_MAPPING_KEY),
        Action("AddAnyPortMapping", ins=_MAPPING_KEY + _MAPPING_VALUE,
               outs=(("NewReservedPort", "ExternalPort"),), since=2),
        Action("DeletePortMappingRange", ins=_RANGE, since=2),
        Action("GetListOfPortMappings",
               ins=_RANGE + (("NewNumberOfPorts", "PortMappingNumberOfEntries"),),
               outs=(("NewPortListing", "A_ARG_TYPE_PortListing"),), since=2),
    ),
    (
        StateVariable("ConnectionType", "string"),
        StateVariable("PossibleConnectionTypes", "string",
                      ("Unconfigured", "IP_Routed", "IP_Bridged"), events=True),
        StateVariable("ConnectionStatus", "string",
                      ("Unconfigured", "Connecting", "Connected", "PendingDisconnect",
                       "Disconnecting", "Disconnected"), events=True),
        StateVariable("Uptime", "ui4"),
        StateVariable("LastConnectionError", "string", ("ERROR_NONE",)),
        StateVariable("ExternalIPAddress", "string", events=True),
        StateVariable("PortMappingNumberOfEntries", "ui2", events=True),
        StateVariable("PortMappingEnabled", "boolean"),
        StateVariable("PortMappingLeaseDuration", "ui4"),
        StateVariable("RemoteHost", "string"),
        StateVariable("ExternalPort", "ui2"),
        StateVariable("InternalPort", "ui2"),
        StateVariable("PortMappingProtocol", "string", ("TCP", "UDP")),
        StateVariable("InternalClient", "string"),
        StateVariable("PortMappingDescription", "string"),
        StateVariable("A_ARG_TYPE_Manage", "boolean"),
        StateVariable("A_ARG_TYPE_PortListing", "string"),
    ),
)

WAN_COMMON_INTERFACE_CONFIG = ServiceSpec(
    "WANCommonInterfaceConfig", "urn:upnp-org:serviceId:WANCommonIFC1", "/WANCfg.xml",
    "/ctl/CmnIfCfg", "/evt/CmnIfCfg",
    (
        Action("GetCommonLinkProperties", outs=(
            ("NewWANAccessType", "WANAccessType"),
            ("NewLayer1UpstreamMaxBitRate", "Layer1UpstreamMaxBitRate"),
            ("NewLayer1DownstreamMaxBitRate", "Layer1DownstreamMaxBitRate"),
            ("NewPhysicalLinkStatus", "PhysicalLinkStatus"))),
        Action("GetTotalBytesSent", outs=(("NewTotalBytesSent", "TotalBytesSent"),)),
        Action("GetTotalBytesReceived", outs=(("NewTotalBytesReceived", "TotalBytesReceived"),)),
        Action("GetTotalPacketsSent", outs=(("NewTotalPacketsSent", "TotalPacketsSent"),)),
        Action("GetTotalPacketsReceived",
               outs=(("NewTotalPacketsReceived", "TotalPacketsReceived"),)),
    ),
    (
        StateVariable("WANAccessType", "string", ("DSL", "POTS", "Cable", "Ethernet")),
        StateVariable("Layer1UpstreamMaxBitRate", "ui4"),
        StateVariable("Layer1DownstreamMaxBitRate", "ui4"),
        StateVariable("PhysicalLinkStatus", "string",
                      ("Up", "Down", "Initializing", "Unavailable"), events=True),
        StateVariable("TotalBytesSent", "ui4"),
        StateVariable("TotalBytesReceived", "ui4"),
        StateVariable("TotalPacketsSent", "ui4"),
        StateVariable("TotalPacketsReceived", "ui4"),
    ),
    fixed_version=1,
)

SERVICES = (WAN_IP_CONNECTION, WAN_COMMON_INTERFACE_CONFIG)


def service_at(control_path: str) -> Optional[ServiceSpec]:
    return next((s for s in SERVICES if s.control_path == control_path), None)


def device_uuids(base: str) -> tuple[str, str, str]:
    """UUIDs of InternetGatewayDevice, WANDevice and WANConnectionDevice."""
    stem = base[:-1]
    return base, stem + ("1" if base[-1] != "1" else "2"), stem + ("3" if base[-1] != "3" else "4")


def device_types(igd_version: int) -> tuple[str, str, str]:
    return tuple(f"{UPNP_ORG}:device:{name}:{igd_version}"  # type: ignore[return-value]
                 for name in ("InternetGatewayDevice", "WANDevice", "WANConnectionDevice"))


def _service_xml(spec: ServiceSpec, igd_version: int) -> str:
    return (f"<serviceList><service><serviceType>{spec.service_type(igd_version)}</serviceType>"
            f"<serviceId>{spec.service_id}</serviceId><SCPDURL>{spec.scpd_path}</SCPDURL>"
            f"<controlURL>{spec.control_path}</controlURL>"
            f"<eventSubURL>{spec.event_path}</eventSubURL></service></serviceList>")


def root_description(uuid: str, igd_version: int, presentation_host: str) -> bytes:
    """rootDesc.xml (UPnP Device Architecture 1.1 section 2.3), absolute-path URLs."""
    root, wan, conn = device_uuids(uuid)
    igd_type, wan_type, conn_type = device_types(igd_version)

    def device(kind: str, udn: str, name: str, inner: str) -> str:
        return (f"<device><deviceType>{kind}</deviceType><friendlyName>{name}</friendlyName>"
                "<manufacturer>natlab</manufacturer>"
                "<manufacturerURL>https://example.invalid/natlab</manufacturerURL>"
                "<modelName>natlab emulated gateway</modelName><modelNumber>1</modelNumber>"
                f"<UDN>uuid:{udn}</UDN>{inner}</device>")

    conn_xml = device(conn_type, conn, "WANConnectionDevice",
                      _service_xml(WAN_IP_CONNECTION, igd_version))
    wan_xml = device(wan_type, wan, "WANDevice",
                     _service_xml(WAN_COMMON_INTERFACE_CONFIG, igd_version)
                     + f"<deviceList>{conn_xml}</deviceList>")
    root_xml = device(igd_type, root, "natlab gateway",
                      f"<deviceList>{wan_xml}</deviceList>"
                      f"<presentationURL>http://{escape(presentation_host)}/</presentationURL>")
    return ('<?xml version="1.0"?>\r\n<root xmlns="urn:schemas-upnp-org:device-1-0">'
            "<specVersion><major>1</major><minor>1</minor></specVersion>"
            f"{root_xml}</root>").encode()


def scpd(spec: ServiceSpec, igd_version: int) -> bytes:
    """The service description (SCPD) rendered from the tables."""
    version = spec.fixed_version or igd_version
    variables = {v.name: v for v in spec.variables}
    actions = []
    for action in spec.actions:
        if action.since > version:
            continue
        args = "".join(
            f"<argument><name>{name}</name><direction>{direction}</direction>"
            f"<relatedStateVariable>{var}</relatedStateVariable></argument>"
            for direction, pairs in (("in", action.ins), ("out", action.outs))
            for name, var in pairs)
        actions.append(f"<action><name>{action.name}</name><argumentList>{args}"
                       "</argumentList></action>")
    used = {var for action in spec.actions if action.since <= version
            for _, var in action.ins + action.outs} | {"PortMappingNumberOfEntries"} & set(variables)
    states = "".join(_variable_xml(v) for v in spec.variables if v.name in used)
    return ('<?xml version="1.0"?>\r\n<scpd xmlns="urn:schemas-upnp-org:service-1-0">'
            "<specVersion><major>1</major><minor>0</minor></specVersion>"
            f"<actionList>{''.join(actions)}</actionList>"
            f"<serviceStateTable>{states}</serviceStateTable></scpd>").encode()


def _variable_xml(variable: StateVariable) -> str:
    allowed = "".join(f"<allowedValue>{v}</allowedValue>" for v in variable.allowed)
    allowed = f"<allowedValueList>{allowed}</allowedValueList>" if allowed else ""
    events = "yes" if variable.events else "no"
    return (f'<stateVariable sendEvents="{events}"><name>{variable.name}</name>'
            f"<dataType>{variable.data_type}</dataType>{allowed}</stateVariable>")


def document(path: str, uuid: str, igd_version: int, presentation_host: str) -> Optional[bytes]:
    """The description document at ``path``, or None (404)."""
    if path == ROOT_DESC_PATH:
        return root_description(uuid, igd_version, presentation_host)
    spec = next((s for s in SERVICES if s.scpd_path == path), None)
    return None if spec is None else scpd(spec, igd_version)

"""UPnP SOAP control messages: parse a call, emit a response or a fault.

Theory of operation. A control point POSTs a SOAP 1.1 envelope to a control
URL with a ``SOAPAction: "urn:...:service:NAME:V#Action"`` header. The body is
parsed with the standard library's expat-based ``xml.etree`` behind two
guards: a hard size cap (``MAX_BODY``, checked before parsing) and a refusal of
any DOCTYPE, which rules out entity expansion ("billion laughs") and external
entities outright (SOAP 1.1 section 3 forbids DTDs in messages anyway).
defusedxml is not needed for that and is not a dependency.

``parse_call`` never raises: it returns ``SoapCall`` or ``SoapProblem`` (HTTP
400 or 413, counted by the caller). Faults carry the UPnP error codes of
``UPNP_ERRORS`` (UPnP Device Architecture 1.1 section 3.2.2 and the
WANIPConnection:1/:2 service definitions).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.parsers import expat
from dataclasses import dataclass
from typing import Optional, Sequence, Union
from xml.sax.saxutils import escape

MAX_BODY = 16384
"""Larger bodies are refused unparsed (413); AddPortMapping is about 700 octets."""
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENCODING = "http://schemas.xmlsoap.org/soap/encoding/"
CONTROL_NS = "urn:schemas-upnp-org:control-1-0"

UPNP_ERRORS = {
    401: "Invalid Action",
    402: "Invalid Args",
    501: "Action Failed",
    606: "Action not authorized",
    713: "SpecifiedArrayIndexInvalid",
    714: "NoSuchEntryInArray",
    715: "WildCardNotPermittedInSrcIP",
    716: "WildCardNotPermittedInExtPort",
    718: "ConflictInMappingEntry",
    724: "SamePortValuesRequired",
    725: "OnlyPermanentLeasesSupported",
    726: "RemoteHostOnlySupportsWildcard",
    727: "ExternalPortOnlySupportsWildcard",
    728: "NoPortMapsAvailable",
    729: "ConflictWithOtherMechanisms",
    730: "PortMappingNotFound",
    732: "WildCardNotPermittedInIntPort",
    733: "InconsistentParameters",
}


@dataclass(frozen=True)
class SoapCall:
    """One action call: service type (``urn:...:WANIPConnection:2``), action, arguments."""

    service_type: str
    action: str
    arguments: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> Optional[str]:
        return next((value for key, value in self.arguments if key == name), None)

    def emit(self) -> bytes:
        """The envelope a control point sends (for tests and clients)."""
        args = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in self.arguments)
        return _envelope(f'<u:{self.action} xmlns:u="{self.service_type}">{args}'
                         f"</u:{self.action}>")

    @property
    def soap_action(self) -> str:
        return f'"{self.service_type}#{self.action}"'


@dataclass(frozen=True)
class SoapProblem:
    """A body that is not a SOAP call: the HTTP status to answer and why."""

    status: int
    reason: str


class _Refused(Exception):
    """Raised inside expat handlers to stop a document with a DTD."""


def _refuse_doctype(*_args: object) -> None:
    raise _Refused("DOCTYPE")


def parse_xml(data: bytes) -> Union[ET.Element, SoapProblem]:
    """Parse ``data`` into an ``xml.etree`` tree with DOCTYPEs (so entities) refused.

    pyexpat drives an ``ET.TreeBuilder`` directly because the C XMLParser of
    ``xml.etree`` does not expose its expat handlers.
    """
    if len(data) > MAX_BODY:
        return SoapProblem(413, "too-large")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_doctype
    parser.ExternalEntityRefHandler = _refuse_doctype
    parser.StartElementHandler = lambda name, attrs: builder.start(_clark(name), {
        _clark(key): value for key, value in attrs.items()})
    parser.EndElementHandler = lambda name: builder.end(_clark(name))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(bytes(data), True)
        return builder.close()
    except _Refused:
        return SoapProblem(400, "doctype")
    except (expat.ExpatError, AssertionError, IndexError):
        return SoapProblem(400, "not-xml")


def _clark(name: str) -> str:
    """expat's ``uri}local`` as ElementTree's ``{uri}local``."""
    return "{" + name if "}" in name else name


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def parse_call(body: bytes, soap_action: Optional[str] = None) -> Union[SoapCall, SoapProblem]:
    """The call in ``body``; the SOAPAction header, when given, must name the same action."""
    root = parse_xml(body)
    if isinstance(root, SoapProblem):
        return root
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        return SoapProblem(400, "not-an-envelope")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) == 0:
        return SoapProblem(400, "no-body")
    call = soap_body[0]
    service_type, action = _split(call.tag)
    arguments = tuple((_split(arg.tag)[1], (arg.text or "").strip()) for arg in call)
    if soap_action is not None:
        header = soap_action.strip().strip('"')
        if header != f"{service_type}#{action}":
            return SoapProblem(400, "soapaction-mismatch")
    return SoapCall(service_type, action, arguments)


def _envelope(inner: str) -> bytes:
    return ('<?xml version="1.0"?>\r\n'
            f'<s:Envelope xmlns:s="{SOAP_ENV}" s:encodingStyle="{SOAP_ENCODING}">'
            f"<s:Body>{inner}</s:Body></s:Envelope>\r\n").encode()


def response(service_type: str, action: str, outs: Sequence[tuple[str, str]],
             cdata: frozenset[str] = frozenset()) -> bytes:
    """The ``<u:ActionResponse>`` envelope with the out arguments in order.

    Arguments named in ``cdata`` hold an XML document (NewPortListing) and go
    in a CDATA section, as miniupnpd sends them: miniupnpc decodes no
    entities. The value must not contain ``]]>`` (escaped text never does).
    """
    args = "".join(f"<{name}><![CDATA[{value}]]></{name}>" if name in cdata
                   else f"<{name}>{escape(value)}</{name}>" for name, value in outs)
    return _envelope(f'<u:{action}Response xmlns:u="{service_type}">{args}'
                     f"</u:{action}Response>")


def fault(code: int) -> bytes:
    """The UPnPError fault for ``code`` (sent with HTTP 500)."""
    return _envelope(
        "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>"
        f'<detail><UPnPError xmlns="{CONTROL_NS}"><errorCode>{code}</errorCode>'
        f"<errorDescription>{escape(UPNP_ERRORS.get(code, 'Action Failed'))}"
        "</errorDescription></UPnPError></detail></s:Fault>")


@dataclass(frozen=True)
class SoapAnswer:
    """A parsed response or fault (for clients and tests)."""

    action: str
    values: tuple[tuple[str, str], ...] = ()
    error_code: Optional[int] = None

    def get(self, name: str) -> Optional[str]:
        return next((value for key, value in self.values if key == name), None)


def parse_answer(body: bytes) -> Union[SoapAnswer, SoapProblem]:
    """A response envelope or a UPnPError fault."""
    root = parse_xml(body)
    if isinstance(root, SoapProblem):
        return root
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) == 0:
        return SoapProblem(400, "no-body")
    inner = soap_body[0]
    if inner.tag == f"{{{SOAP_ENV}}}Fault":
        code = inner.find(f".//{{{CONTROL_NS}}}errorCode")
        text = (code.text or "").strip() if code is not None else ""
        return SoapAnswer("Fault", error_code=int(text) if text.isdigit() else 501)
    _, name = _split(inner.tag)
    return SoapAnswer(name.removesuffix("Response"),
                      tuple((_split(e.tag)[1], e.text or "") for e in inner))

"""Endpoint strings in scenario steps, checked before anything runs.

Steps name endpoints as ``NAME:PORT``, ``ADDRESS:PORT``, ``NAME:*`` or
``${var}`` (``to``, ``at``, ``expect.source``, the ``internal``/``external``
filters of ``mappings``). Whether a NAME is a host or a gateway is checked in
:mod:`natlab.scenario.load`; here an ADDRESS must be a valid IPv4 address and
a PORT a number from 0 to 65535 (or ``*``), so a typo such as
``203.0.113.999:3478`` is a located error instead of a crash halfway through a run.
"""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv4Address
from typing import Any, Iterator, Optional

from pydantic import BaseModel

from natlab.errors import ConfigError
from natlab.yamlsrc import Doc

__all__ = ["endpoint_errors", "looks_like_address"]

_ADDRESSISH = re.compile(r"^[0-9.]+$")
_VAR = re.compile(r"\$\{[^}]*\}")


def looks_like_address(text: str) -> bool:
    """Digits and dots only: meant as an address (names start with a letter)."""
    return bool(_ADDRESSISH.match(text))


def endpoint_errors(doc: Doc, path: tuple, action: str, spec: BaseModel,
                    expect: Any) -> Iterator[ConfigError]:
    """An error for each endpoint of the step with a bad address or port."""
    for key_path, text, port in _endpoints(action, spec, expect):
        if not isinstance(text, str) or _VAR.search(text):
            continue
        err = _problem(text, port)
        if err is not None:
            what, hint = err
            yield doc.error(what, (*path, *key_path), got=text, hint=hint)


def _endpoints(action: str, spec: BaseModel, expect: Any) -> Iterator[tuple[tuple, Any, str]]:
    """(key path below the step, text, "port" / "no port" / "maybe")."""
    if action in ("udp", "tcp", "icmp", "gre"):
        yield (action, "to"), spec.to, "no port" if action in ("icmp", "gre") else "port"
        yield (action, "at"), spec.at, "maybe"
        if expect is not None:
            yield ("expect", "source"), expect.source, "maybe"
            yield ("expect", "reply_from"), expect.reply_from, "maybe"
    inner = spec if action == "mappings" else getattr(spec, "mappings", None)
    if inner is not None:
        prefix = (action,) if action == "mappings" else (action, "mappings")
        yield (*prefix, "internal"), inner.internal, "maybe"
        yield (*prefix, "external"), inner.external, "maybe"
    if action in ("mappings", "wait") and expect is not None:
        yield ("expect", "external"), getattr(expect, "external", None), "maybe"


def _problem(text: str, port: str) -> Optional[tuple[str, str]]:
    host, sep, number = text.rpartition(":") if ":" in text else (text, "", "")
    if looks_like_address(host):
        try:
            IPv4Address(host)
        except AddressValueError as err:
            return "invalid IPv4 address", f"{err}; write four numbers 0-255, e.g. 203.0.113.10"
    if sep and port != "no port" and number != "*":
        if not number.isdigit() or int(number) > 65535:
            return "invalid port", "a port is a number from 0 to 65535, or * for any"
    return None

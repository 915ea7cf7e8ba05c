"""One exception tree for everything natlab raises at its callers.

::

    NatlabError                  base; message is "what: got (hint)"
    ├── ConfigError              your file, preset, override or call is wrong
    │   └── TopologyError        ... in a topology (addresses, names, references)
    ├── LabError                 realising or driving a lab failed
    │   ├── NotPrivileged        needs root / CAP_NET_ADMIN
    │   ├── BackendUnavailable   a backend's library or engine is missing
    │   └── LabNotFound          no such lab, or several and none named
    └── ControlError             a gateway's control socket refused or failed

Bad packets are never exceptions: the engine returns ``Drop(reason)`` verdicts.
"""

from __future__ import annotations

from typing import Any, Optional


class NatlabError(Exception):
    """Base of every natlab error: what went wrong, what was got, a hint."""

    def __init__(self, what: str, *, got: Any = None, hint: Optional[str] = None) -> None:
        self.what = what
        self.got = got
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.what
        if self.got is not None:
            text += f": got {self.got!r}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigError(NatlabError):
    """Configuration is wrong. Carries where: file, line and the key path."""

    def __init__(
        self,
        what: str,
        *,
        got: Any = None,
        hint: Optional[str] = None,
        file: Optional[str] = None,
        line: Optional[int] = None,
        key: Optional[str] = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        super().__init__(what, got=got, hint=hint)

    @property
    def where(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file + (f":{self.line}" if self.line else ""))
        if self.key:
            parts.append(f"key '{self.key}'")
        return ", ".join(parts)

    @property
    def message(self) -> str:
        base = super().message
        return f"{self.where}: {base}" if self.where else base


class TopologyError(ConfigError):
    """A topology file is inconsistent (addresses, names, references)."""


class LabError(NatlabError):
    """Realising, driving or removing a lab failed."""


class NotPrivileged(LabError):
    """The operation needs root (CAP_NET_ADMIN)."""


class BackendUnavailable(LabError):
    """A backend's library, tool or daemon is missing."""


class LabNotFound(LabError):
    """No such lab (or several labs are up and none was named)."""


class ControlError(NatlabError):
    """A gateway's control socket refused a request or could not be reached."""

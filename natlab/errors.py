"""One exception tree for everything natlab raises at its callers.

::

    NatlabError                  base; message is "what: got (hint)"
    ├── ConfigError              your file, preset, override or call is wrong
    │   ├── TopologyError        ... in a topology (addresses, names, references)
    │   ├── UnknownBackend       ... a realiser or datapath name no registry knows (also a LabError)
    │   └── ConfigErrors         several of the above at once, sorted by file and line
    │       └── TopologyErrors   ... all of them TopologyErrors
    ├── LabError                 realising or driving a lab failed
    │   ├── NotPrivileged        needs root / CAP_NET_ADMIN
    │   ├── BackendUnavailable   a backend's library or engine is missing
    │   └── LabNotFound          no such lab, or several and none named
    └── ControlError             a gateway's control socket refused or failed

Bad packets are never exceptions: the engine returns ``Drop(reason)`` verdicts.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Optional


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


class ConfigErrors(ConfigError):
    """Every error found in one go, sorted by file and line.

    ``file``/``line``/``key``/``what`` are the first error's, so code written for
    one ConfigError keeps working; ``message`` has one line per error.
    """

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = _sorted_unique(errors)
        if not self.errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = self.errors[0]
        super().__init__(first.what, got=first.got, hint=first.hint,
                         file=first.file, line=first.line, key=first.key)

    @property
    def summary(self) -> str:
        """``"3 errors in topo.yaml"`` (or ``"3 errors"`` over several files)."""
        files = {e.file for e in self.errors}
        where = f" in {next(iter(files))}" if len(files) == 1 and None not in files else ""
        return f"{len(self.errors)} errors{where}"

    @property
    def message(self) -> str:
        return "\n".join(e.message for e in self.errors)


def _flatten(errors: Iterable[ConfigError]) -> Iterator[ConfigError]:
    for err in errors:
        if isinstance(err, ConfigErrors):
            yield from err.errors
        else:
            yield err


def _sorted_unique(errors: Iterable[ConfigError]) -> tuple[ConfigError, ...]:
    seen: set[str] = set()
    unique = []
    for err in _flatten(errors):
        if err.message not in seen:
            seen.add(err.message)
            unique.append(err)
    # Errors without a file or line go after those with one (sort is stable).
    return tuple(sorted(unique, key=lambda e: (e.file is None, e.file or "",
                                               e.line is None, e.line or 0)))


class ErrorList:
    """Collects ConfigErrors from independent checks, then raises them together."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def __bool__(self) -> bool:
        return bool(self.errors)

    def add(self, err: ConfigError) -> None:
        self.errors.extend(_flatten([err]))

    @contextmanager
    def catch(self) -> Iterator[None]:
        """Run a check; a ConfigError it raises is kept instead of propagating."""
        try:
            yield
        except ConfigError as err:
            self.add(err)

    def raise_if_any(self) -> None:
        """Raise nothing, the one error as it is, or a ConfigErrors of them all."""
        if self.errors:
            raise combined(self.errors)


def combined(errors: Iterable[ConfigError]) -> ConfigError:
    """One error as it is; several as ConfigErrors (TopologyErrors if all are topology ones)."""
    unique = _sorted_unique(errors)
    if len(unique) == 1:
        return unique[0]
    if all(isinstance(e, TopologyError) for e in unique):
        return TopologyErrors(unique)
    return ConfigErrors(unique)


def errors_of(err: ConfigError) -> tuple[ConfigError, ...]:
    """The single errors inside ``err`` (itself, unless it is a ConfigErrors)."""
    return tuple(_flatten([err]))


class TopologyErrors(ConfigErrors, TopologyError):
    """Several topology errors at once (so ``except TopologyError`` still catches them)."""


def report(err: NatlabError, prog: str = "natlab") -> str:
    """How a command line shows ``err``: one line, or a count and one line per error."""
    if isinstance(err, ConfigErrors):
        return f"{prog}: {err.summary}:\n" + "\n".join(f"  {e.message}" for e in err.errors)
    return f"{prog}: error: {err.message}"


class LabError(NatlabError):
    """Realising, driving or removing a lab failed."""


class NotPrivileged(LabError):
    """The operation needs root (CAP_NET_ADMIN)."""


class BackendUnavailable(LabError):
    """A backend's library, tool or daemon is missing."""


class LabNotFound(LabError):
    """No such lab (or several labs are up and none was named)."""


class UnknownBackend(ConfigError, LabError):
    """A realiser or datapath name that its registry does not know ("did you mean" in the hint).

    A :class:`ConfigError` (the name is the caller's mistake) that is also a
    :class:`LabError`, as callers of ``natlab.lab.up`` have always caught it.
    """


class ControlError(NatlabError):
    """A gateway's control socket refused a request or could not be reached."""

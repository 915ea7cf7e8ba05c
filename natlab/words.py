"""Words that agree with their count: ``plural(1, "gateway") == "1 gateway"``."""

from __future__ import annotations

from typing import Optional


def plural(count: int, noun: str, many: Optional[str] = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is 1.

    The plural is ``noun + "s"`` unless ``many`` gives it (``plural(2, "entry", "entries")``).
    """
    return f"{count} {noun if count == 1 else (many or noun + 's')}"

"""The memory realiser: the in-memory twin (see :mod:`.realiser`, :mod:`.network`)."""

from natlab.realisers.memory.realiser import MemoryRealiser

__all__ = ["MemoryRealiser"]

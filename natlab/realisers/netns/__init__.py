"""The netns realiser: network namespaces on this machine (see :mod:`.realiser`)."""

from natlab.realisers.netns.realiser import NetnsRealiser

__all__ = ["NetnsRealiser"]

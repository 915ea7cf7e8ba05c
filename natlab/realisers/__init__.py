"""Realisers: how a topology's nodes and links are made (see :mod:`.base` and :mod:`.registry`).

``netns/`` (namespaces on this machine, the default), ``docker/`` (a container
per node, wired like netns) and ``memory/`` (the in-memory twin). A cluster
realiser would be one more folder and one line in
:data:`natlab.realisers.registry.REALISERS` (docs/scale-out.md).
"""

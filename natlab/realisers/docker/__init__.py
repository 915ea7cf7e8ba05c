"""The docker realiser: a container per node, wired like netns (see :mod:`.realiser`)."""

from natlab.realisers.docker.realiser import DockerRealiser

__all__ = ["DockerRealiser"]

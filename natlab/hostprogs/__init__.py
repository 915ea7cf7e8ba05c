"""Programs that run inside lab hosts: :mod:`.probe` (UDP/TCP/ICMP probes, reflector) and
:mod:`.peer` (the matrix's hole-punching peer and rendezvous).

They import nothing above the packet floor, so they start fast in any namespace or
container; ``python -m natlab.probe`` and ``python -m natlab.peer`` remain their
stable names.
"""

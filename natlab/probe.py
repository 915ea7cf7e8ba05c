"""``python -m natlab.probe``: the built-in probes, kept at this name for scenario files and users' scripts.

The code lives in :mod:`natlab.hostprogs.probe`.
"""

if __name__ == "__main__":
    from natlab.hostprogs.probe import main

    raise SystemExit(main())

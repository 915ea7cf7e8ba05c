"""``python -m natlab.peer``: the matrix's hole-punching peer, kept at this name for users' commands.

The code lives in :mod:`natlab.hostprogs.peer`.
"""

if __name__ == "__main__":
    from natlab.hostprogs.peer import main

    raise SystemExit(main())

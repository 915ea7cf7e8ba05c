"""``natlab explore``: a local web workbench that records what you try as a scenario.

Theory of operation
-------------------
::

    browser ──HTTP/SSE──> security.guard ──> server._Api ──> session.Workbench ──> Driver (memory twin)
      static/ (HTML, JS, CSS)     token, origin, host      JSON actions, SSE state     record.Recording -> scenario file

- :mod:`~natlab.explore.session` owns the state: one lab (a scenario
  :class:`~natlab.scenario.driver.Driver`), each gateway's policy (mirrored,
  validated with natlab's own preset code), and the recording.
- :mod:`~natlab.explore.record` turns each action and what was observed into a
  scenario step; saving validates the file with natlab's loader and replays it.
- :mod:`~natlab.explore.punch` hole-punches with probes, like :mod:`natlab.peer`;
  :mod:`~natlab.explore.walk` cuts a probe's traced hops into packets.
- :mod:`~natlab.explore.knobs` and :mod:`~natlab.explore.topoview` shape what the
  page shows (knob rows with RFC requirements and allowed values; a laid-out topology).
- :mod:`~natlab.explore.server` (Starlette, uvicorn, server-sent events) and
  :mod:`~natlab.explore.security` (the access rules) are the I/O shell.
- :mod:`~natlab.explore.backend` is the one module importing natlab internals.

Not yet: ``--lab NAME`` (attach to a running netns/Docker lab) and
``--backend netns``; the command says so instead of pretending.
"""

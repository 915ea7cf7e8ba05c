"""``natlab explore``: a local web workbench that records what you try as a scenario.

Theory of operation
-------------------
::

    browser ──HTTP/SSE──> security.guard ──> server._Api ──> session.Workbench ──> Driver
      static/ (HTML, JS, CSS)     token, origin, host      JSON actions, SSE state     (memory twin, or a real
                                                                                    lab: brought up or attached)
                                                                 record.Recording -> scenario file

- :mod:`~natlab.explore.session` owns the state: one lab (a realiser's
  :class:`~natlab.realisers.base.Driver`: the memory twin, a netns or Docker lab
  it brought up, or one it attached to and leaves up), each gateway as a
  :mod:`~natlab.explore.mirror` (validated with natlab's own preset code, caught
  up with what a real gateway reports), and the recording.
- :mod:`~natlab.explore.record` turns each action and what was observed into a
  scenario step; saving validates the file with natlab's loader and replays it.
- :mod:`~natlab.explore.punch` hole-punches as the scenario ``punch`` step does (the
  built-in peer on a real lab, its own core on the twin) and
  :mod:`~natlab.explore.punchwalk` draws the attempt from the peers' traces and the
  gateways' records;
  :mod:`~natlab.explore.walk` cuts a probe's traced hops into packets (memory);
  :mod:`~natlab.explore.eventwalk` tells the same packets from the gateways'
  records where nothing can trace them (real labs), and says which hops it cannot see.
- :mod:`~natlab.explore.knobs` and :mod:`~natlab.explore.topoview` shape what the
  page shows (knob rows with RFC requirements and allowed values; a laid-out topology).
- :mod:`~natlab.explore.server` (Starlette, uvicorn, server-sent events) and
  :mod:`~natlab.explore.security` (the access rules) are the I/O shell.
- :mod:`~natlab.explore.backend` is the one module importing natlab internals.
"""

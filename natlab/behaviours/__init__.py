"""Behaviours: named presets (``natlab/data/behaviours/*.yaml``) and overrides -> one frozen Policy.

:mod:`.presets` loads and resolves presets (``extends:``, file:line errors),
:mod:`.overrides` parses ``knob=value`` and nested/dotted knobs, :mod:`.folders`
says where a lab may load preset files from.
"""

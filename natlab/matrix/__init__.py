"""The traversal matrix: UDP hole punching between every pair of presets.

:mod:`.memory` (in the in-memory twin, and RFC 4787's predictions), :mod:`.lab`
(on a real lab, the built-in peer or the user's app) and :mod:`.heatmap` (SVG).
"""

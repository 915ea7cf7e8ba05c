"""The traversal matrix as an SVG heat map (hand-written SVG, no plotting library).

Rows are alice's preset, columns bob's; a cell is green when hole punching
succeeded and red when it failed. A cell whose outcome differs from an expected
table (RFC 4787's prediction, :data:`natlab.matrix.memory.EXPECTED_CLASSIC`) carries a
"!" and a thick outline. The title names the backend and the seed.

PNG is not written: it would need an imaging library (Pillow or matplotlib),
which natlab does not depend on. Any browser opens the SVG; ``rsvg-convert`` or
Inkscape turn it into a PNG.

:func:`render_svg` is pure (results in, text out); :func:`write_svg` writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional
from xml.sax.saxutils import escape

__all__ = ["FAIL_COLOUR", "OK_COLOUR", "check_svg_path", "render_svg", "write_svg"]

OK_COLOUR, FAIL_COLOUR = "#2e9e48", "#d0343a"
CELL, PAD, CHAR = 64, 12, 7.2
"""Cell size, padding and the width of one label character, in pixels (12 px sans-serif)."""


def _names(results: Mapping[tuple[str, str], bool]) -> tuple[list[str], list[str]]:
    rows = list(dict.fromkeys(a for a, _ in results))
    cols = list(dict.fromkeys(b for _, b in results))
    return rows, cols


def render_svg(results: Mapping[tuple[str, str], bool], *, seed: int, backend: str,
               expected: Optional[Mapping[tuple[str, str], bool]] = None,
               title: str = "UDP hole punching") -> str:
    """The matrix ``(alice's preset, bob's preset) -> ok`` as an SVG document."""
    rows, cols = _names(results)
    label_w = int(max((len(n) for n in rows), default=0) * CHAR) + PAD
    label_h = int(max((len(n) for n in cols), default=0) * CHAR * 0.71) + PAD  # columns at -45 deg
    heading = f"{title}: {backend} backend, seed {seed}"
    left, top = PAD + label_w + 16, PAD + 48 + label_h
    width = max(left + CELL * len(cols) + label_h + PAD, int(len(heading) * CHAR * 1.2) + 2 * PAD)
    height = top + CELL * len(rows) + 36 + PAD
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(heading)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{PAD}" y="{PAD + 16}" font-size="16" font-weight="bold">{escape(heading)}</text>',
        f'<text x="{PAD}" y="{PAD + 36}" fill="#555">rows: alice\'s NAT, columns: bob\'s NAT</text>',
    ]
    for j, b in enumerate(cols):
        x, y = left + CELL * j + CELL // 2, top - 6
        out.append(f'<text x="{x}" y="{y}" transform="rotate(-45 {x} {y})">{escape(b)}</text>')
    for i, a in enumerate(rows):
        y = top + CELL * i
        out.append(f'<text x="{left - 8}" y="{y + CELL // 2 + 4}" text-anchor="end">{escape(a)}</text>')
        for j, b in enumerate(cols):
            if (a, b) in results:
                out.append(_cell(a, b, results[(a, b)], left + CELL * j, y, expected))
    legend_y = top + CELL * len(rows) + 24
    out.append(f'<rect x="{PAD}" y="{legend_y - 11}" width="12" height="12" fill="{OK_COLOUR}"/>'
               f'<text x="{PAD + 18}" y="{legend_y}">ok</text>'
               f'<rect x="{PAD + 50}" y="{legend_y - 11}" width="12" height="12" fill="{FAIL_COLOUR}"/>'
               f'<text x="{PAD + 68}" y="{legend_y}">fail</text>'
               + (f'<text x="{PAD + 110}" y="{legend_y}">! differs from RFC 4787 theory</text>'
                  if expected else ""))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _cell(a: str, b: str, ok: bool, x: int, y: int,
          expected: Optional[Mapping[tuple[str, str], bool]]) -> str:
    surprise = expected is not None and (a, b) in expected and expected[(a, b)] != ok
    word = ("ok" if ok else "fail") + (" !" if surprise else "")
    stroke = 'stroke="black" stroke-width="4"' if surprise else 'stroke="white" stroke-width="2"'
    return (f'<g class="cell" data-alice="{escape(a)}" data-bob="{escape(b)}" data-ok="{str(ok).lower()}">'
            f"<title>alice {escape(a)} / bob {escape(b)}: {word}</title>"
            f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{OK_COLOUR if ok else FAIL_COLOUR}" {stroke}/>'
            f'<text x="{x + CELL // 2}" y="{y + CELL // 2 + 4}" text-anchor="middle" fill="white" '
            f'font-weight="bold">{word}</text></g>')


def check_svg_path(path: str | Path) -> Path:
    """``path`` as a Path, or a ConfigError if it does not name an SVG file."""
    from natlab.errors import ConfigError

    target = Path(path)
    if target.suffix.lower() != ".svg":
        raise ConfigError("the matrix image can only be written as SVG", got=str(target),
                          hint="name it *.svg; PNG would need Pillow or matplotlib (convert with rsvg-convert)")
    return target


def write_svg(path: str | Path, results: Mapping[tuple[str, str], bool], *, seed: int, backend: str,
              expected: Optional[Mapping[tuple[str, str], bool]] = None) -> Path:
    """Write :func:`render_svg` to ``path`` (its suffix must be .svg)."""
    target = check_svg_path(path)
    target.write_text(render_svg(results, seed=seed, backend=backend, expected=expected))
    return target

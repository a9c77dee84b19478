"""The report's report.pdf: a title page (key numbers, provenance), then one page per figure."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from .style import new_figure

WRAP = 110  # characters per line on the title page


def title_page(
    title: str, highlights: Sequence[tuple[str, Any]], provenance: Mapping[str, Any]
) -> Figure:
    """A text page: the title, the key numbers and the provenance, wrapped to fit A4 landscape."""
    lines: list[tuple[str, bool]] = [("Key numbers", True)]
    for key, value in highlights:
        lines += [(line, False) for line in textwrap.wrap(f"{key}: {value}", WRAP)]
    lines.append(("Provenance", True))
    for key, value in provenance.items():
        text = textwrap.wrap(f"{key}: {value}", WRAP)
        lines += [(line, False) for line in text[:4]]  # long JSON values are in summary.json
        if len(text) > 4:
            lines.append(("    ... (in full in summary.json)", False))
    fig = new_figure(11.69, 8.27)
    fig.suptitle(title, fontsize=13)
    step = min(0.024, 0.92 / max(len(lines), 1))
    for i, (line, heading) in enumerate(lines):
        fig.text(
            0.04,
            0.92 - i * step,
            line,
            fontsize=10 if heading else 9,
            fontweight="bold" if heading else "normal",
            family="monospace" if not heading else "sans-serif",
            va="top",
        )
    return fig


class PdfReport:
    """report.pdf being written: `add(fig)` appends a page."""

    def __init__(self, file, title: str):
        self.pages = PdfPages(file, metadata={"Title": title, "Creator": "posterior-diffusion"})

    def add(self, fig: Figure) -> None:
        self.pages.savefig(fig)

    def close(self) -> None:
        self.pages.close()

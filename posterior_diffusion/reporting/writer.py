"""Writing a report directory: figures/*.png, report.pdf, index.html, summary.json, *.csv.

Each file is written to a temporary sibling and renamed into place, so a reader never sees a
half-written one. Shared by `calibrate` and `report`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from posterior_diffusion.io.atomic import atomic_path

from . import html
from .pdf import PdfReport, title_page
from .style import plot_style
from .tables import write_csv, write_json


@dataclass
class FigureSpec:
    name: str  # file stem: figures/<name>.png
    title: str
    caption: str  # how to read it
    build: Callable[[], Figure]


@dataclass
class Table:
    name: str  # file stem: <name>.csv
    what: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


def write_report(
    folder: str | os.PathLike,
    title: str,
    figures: Sequence[FigureSpec],
    summary: Mapping[str, Any],
    tables: Sequence[Table],
    highlights: Sequence[tuple[str, Any]],
    provenance: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> Path:
    """Write the whole report into `folder` (created if missing); returns its index.html."""
    folder = Path(folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    shown = []
    with plot_style(), atomic_path(folder / "report.pdf") as pdf_tmp, open(pdf_tmp, "wb") as f:
        pdf = PdfReport(f, title)
        try:
            pdf.add(title_page(title, highlights, provenance))
            for spec in figures:
                fig = spec.build()
                png = folder / "figures" / f"{spec.name}.png"
                with atomic_path(png) as tmp:
                    fig.savefig(tmp, format="png")
                pdf.add(fig)
                shown.append((f"figures/{spec.name}.png", spec.title, spec.caption))
        finally:
            pdf.close()
    write_json(folder / "summary.json", summary)
    files = [("report.pdf", "every figure, one per page"), ("summary.json", "every number")]
    for table in tables:
        write_csv(folder / f"{table.name}.csv", table.header, table.rows)
        files.append((f"{table.name}.csv", table.what))
    page = html.render(title, highlights, shown, files, provenance, notes)
    index = folder / "index.html"
    with atomic_path(index) as tmp:
        Path(tmp).write_text(page)
    return index

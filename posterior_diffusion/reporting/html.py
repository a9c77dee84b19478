"""The report's index.html: key numbers, figures (PNG files in figures/) with how to read them,
links to the tables, and provenance. Static and self-explanatory; no scripts."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

STYLE = """
body { font-family: sans-serif; max-width: 1150px; margin: auto; padding: 1em; line-height: 1.4; }
img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
td.value { font-family: monospace; word-break: break-all; max-width: 750px; }
p.caption { color: #333; margin-top: 0.3em; }
"""


def _rows(pairs: Sequence[tuple[str, Any]]) -> str:
    return "\n".join(
        f'<tr><th>{html.escape(str(k))}</th><td class="value">{html.escape(str(v))}</td></tr>'
        for k, v in pairs
    )


def render(
    title: str,
    highlights: Sequence[tuple[str, Any]],
    figures: Sequence[tuple[str, str, str]],
    files: Sequence[tuple[str, str]],
    provenance: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> str:
    """The page. figures: (PNG path relative to the page, title, caption); files: (path, what)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f"<ul>{items}</ul>")
    parts += ["<h2>Key numbers</h2>", f"<table>{_rows(highlights)}</table>", "<h2>Figures</h2>"]
    for src, name, caption in figures:
        parts += [
            f"<h3>{html.escape(name)}</h3>",
            f'<img src="{html.escape(src)}" alt="{html.escape(name)}">',
            f'<p class="caption">{html.escape(caption)}</p>',
        ]
    links = "".join(
        f'<li><a href="{html.escape(path)}">{html.escape(path)}</a>: {html.escape(what)}</li>'
        for path, what in files
    )
    parts += ["<h2>Files</h2>", f"<ul>{links}</ul>", "<h2>Provenance</h2>"]
    parts += [f"<table>{_rows(list(provenance.items()))}</table>", "</body></html>"]
    return "\n".join(parts) + "\n"

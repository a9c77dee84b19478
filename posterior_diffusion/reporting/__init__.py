"""Report directories (figures, report.pdf, index.html, summary.json, CSV tables) for calibration
runs and posterior files; matplotlib is imported here only, never by sampling code."""

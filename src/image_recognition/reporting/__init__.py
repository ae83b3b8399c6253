"""Comparison figures (plotly) and the self-contained HTML report, with no Kedro imports; imports ``models`` and ``common``."""

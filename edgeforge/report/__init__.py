"""The compression-search report: a search document (``edgeforge.compress.document``) rendered as canonical
JSON and one self-contained HTML page with a Pareto plot (``render``)."""

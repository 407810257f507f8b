"""Compression search: per-layer int4/int8 and pruning recipes, sensitivity, a budget-constrained search and its report."""

"""On-device benchmark: the MLPerf Tiny DUT protocol with edgeforge's extensions, and bench sessions."""

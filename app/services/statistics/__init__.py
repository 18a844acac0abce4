"""Public statistics (issue 15): indicators, their monthly aggregates, the figures a page shows."""

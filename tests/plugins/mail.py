"""Test fixtures for mail (being written for issue 3)."""

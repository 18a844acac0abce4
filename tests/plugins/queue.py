"""Test fixtures for queue (being written for issue 3)."""

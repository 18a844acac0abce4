"""Requests from businesses: the form's rules, submission, qualification, needs and matches, the desk's tools."""

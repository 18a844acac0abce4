"""Reference data: territories, the catalog of subjects, the company registry."""

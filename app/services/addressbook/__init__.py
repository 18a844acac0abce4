"""The address book: institutions, antennes, experts, their zones and subjects, and who receives what (routing, coverage)."""

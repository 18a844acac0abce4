"""Business rules as verbs. Every interface (public pages, admin, CLI, jobs) calls these."""

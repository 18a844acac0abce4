"""People who log in: staff and partner referents, invitations, passwords, sessions."""

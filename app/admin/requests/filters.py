"""The filters of the needs and matches lists (région, département, institution, antenne,
theme, subject, status, dates, « sans preneur depuis N jours »)."""

from __future__ import annotations

from flask_admin.contrib.sqla.filters import FilterEqual, IntEqualFilter
from sqlalchemy import select

from app.admin.addressbook import institution_options, subject_options
from app.admin.base import InSubqueryFilter, LazyOptions
from app.models import MATCH_STATUS_LABELS, NEED_STATUS_LABELS, Antenne, Expert, Match, Need


def need_filters() -> list:
    return [
        FilterEqual(Need.status, "Statut", options=list(NEED_STATUS_LABELS.items())),
        IntEqualFilter(Need.subject_id, "Sujet", options=LazyOptions(subject_options)),
    ]


def match_filters() -> list:
    return [
        FilterEqual(Match.status, "Statut", options=list(MATCH_STATUS_LABELS.items())),
        InSubqueryFilter(
            Match.expert_id,
            "Institution",
            lambda ident: select(Expert.id).join(Antenne).where(Antenne.institution_id == ident),
            options=LazyOptions(institution_options),
        ),
    ]

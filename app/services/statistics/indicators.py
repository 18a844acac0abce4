"""The public indicators, each defined once as a function of one request's or one need's facts
(issue 15). The aggregates (``aggregates``) count them per month, région and theme; the page,
``/stats.csv`` and the tests read these definitions, so a figure means the same everywhere.

A month is the calendar month in Paris time of the request's or need's creation: a request sent
on 31 January at 23:30 UTC is February's, since it is then 1 February, 00:30, in Paris.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from app.dates import in_paris

# How quickly an expert should take a need in charge after it was sent (the promise to businesses).
TAKEN_IN_CHARGE_DAYS = 5


@dataclass(frozen=True)
class RequestFacts:
    """What the indicators read of a request (``Solicitation``)."""

    created_at: datetime
    region_code: str
    theme_id: int
    transmitted: bool  # sent to experts (status « processed »)
    channel: str = "site"  # where it came from (issue 16): ``models.partners.CHANNELS``


@dataclass(frozen=True)
class NeedFacts:
    """What the indicators read of a need and its matches."""

    created_at: datetime
    region_code: str
    theme_id: int
    facility_id: int
    headcount_code: str | None
    naf_code: str | None
    first_sent_at: datetime | None  # the first match's sending
    first_response_at: datetime | None  # the first taking in charge (or closing, when it came first)
    exchanged: bool  # a match closed « aide proposée » or « pas d'aide disponible »
    helped: bool  # a match closed « aide proposée »
    helped_at: datetime | None  # when the first « aide proposée » was closed


def month_of(moment: datetime) -> date:
    """The first day of the month of ``moment`` in Paris time."""
    local = in_paris(moment)
    return date(local.year, local.month, 1)


def is_transmitted(request: RequestFacts) -> bool:
    """« Part des demandes transmises » counts the requests sent to at least one expert."""
    return request.transmitted


def had_exchange(need: NeedFacts) -> bool:
    """« Échange avec un expert »: an expert closed the need with help proposed or without help
    available — the business and the expert spoke."""
    return need.exchanged


def help_proposed(need: NeedFacts) -> bool:
    """« Aide proposée »: an expert closed the need having proposed help."""
    return need.helped


def taken_in_charge_quickly(need: NeedFacts, days: int = TAKEN_IN_CHARGE_DAYS) -> bool:
    """Among exchanges: the first taking in charge came within ``days`` days of the sending."""
    if not need.exchanged or need.first_sent_at is None or need.first_response_at is None:
        return False
    return need.first_response_at - need.first_sent_at <= timedelta(days=days)


# NAF divisions by section of the A10 aggregation (INSEE's « A10 » level).
A10_SECTIONS: dict[str, tuple[str, range]] = {
    "AZ": ("Agriculture, sylviculture et pêche", range(1, 4)),
    "BE": ("Industrie manufacturière, industries extractives et autres", range(5, 40)),
    "FZ": ("Construction", range(41, 44)),
    "GI": ("Commerce, transports, hébergement et restauration", range(45, 57)),
    "JZ": ("Information et communication", range(58, 64)),
    "KZ": ("Activités financières et d'assurance", range(64, 67)),
    "LZ": ("Activités immobilières", range(68, 69)),
    "MN": ("Activités spécialisées, scientifiques et techniques, services administratifs", range(69, 83)),
    "OQ": ("Administration publique, enseignement, santé et action sociale", range(84, 89)),
    "RU": ("Autres activités de services", range(90, 100)),
}
UNKNOWN_KEY = "NN"


def a10_section(naf_code: str | None) -> str:
    """``47.11Z`` → ``GI``; ``NN`` when the activity is unknown."""
    division = (naf_code or "").replace(".", "")[:2]
    if not division.isdigit():
        return UNKNOWN_KEY
    number = int(division)
    return next((key for key, (_label, divisions) in A10_SECTIONS.items() if number in divisions), UNKNOWN_KEY)


def headcount_key(code: str | None) -> str:
    return code or UNKNOWN_KEY

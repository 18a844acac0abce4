"""The landings' pages, full (``/partenaires/…``) and embedded (``/iframe/…``).

An embedded page may be framed only by its partner's declared origins: the view names them and
``app.headers`` writes ``frame-ancestors`` (every other page says ``'none'``). It has no site
header, sends its height to the embedding page (``static/js/pde-frame.js``), takes prefill
parameters, and keeps the campaign parameters and the embedding page's address (``origin_url``,
added by ``static/js/pde-embed.js``, else the ``Referer``) as the request's provenance. Its form
is checked without cookies (``public.forms.embedded_post_allowed``).
"""

from __future__ import annotations

from flask import abort, render_template, request, url_for

from app.extensions import csrf, limiter
from app.headers import allow_framing_by
from app.models import Landing, LandingSubject
from app.partners import bp
from app.public.views import FormPlace, _form_rate_limit, _tracking, confirmation_page, form_flow
from app.services.partners.landings import clean_origin_url, find_landing, grouped, item_for, offered_items
from app.services.requests.validation import clean_tracking

# Fields a partner may fill in advance in the frame's address (public names of the form).
PREFILL_FIELDS = ("full_name", "email", "phone", "siret")
EMBEDDED_LAYOUT = "partners/embedded_base.html"
FULL_LAYOUT = "base_public.html"


def _landing(slug: str, *, embedded: bool) -> Landing:
    landing = find_landing(slug)
    if landing is None:
        abort(404)
    if embedded:
        allow_framing_by(landing.partner.origins or [])
    return landing


def _origin_url(landing: Landing) -> str | None:
    """The embedding page: what the snippet passed, else the frame's ``Referer`` when it is not
    this site (browsers often send the partner's origin only)."""
    given = clean_origin_url(request.args.get("origin_url"))
    if given:
        return given
    referer = clean_origin_url(request.headers.get("Referer"))
    if referer and not referer.startswith(request.host_url):
        return referer
    return None


def _carried(landing: Landing, *, embedded: bool) -> dict[str, str]:
    carried = _tracking()
    origin = _origin_url(landing) if embedded else None
    if origin:
        carried["origin_url"] = origin
    return carried


def _prefill() -> dict[str, str]:
    values = {name: clean_tracking(request.args.get(name)) for name in PREFILL_FIELDS}
    return {name: value for name, value in values.items() if value}


def _links(landing: Landing, items: list[LandingSubject], *, embedded: bool) -> dict[int, str]:
    """Each subject's form, keeping campaign, provenance and prefill parameters."""
    endpoint = "partners.embedded_form" if embedded else "partners.landing_form"
    params = {**_carried(landing, embedded=embedded), **_prefill()}
    return {
        item.id: url_for(endpoint, landing_slug=landing.slug, subject_slug=item.subject.slug, **params)
        for item in items
    }


def _paused(landing: Landing, *, embedded: bool):
    return render_template(
        "partners/paused.html", landing=landing, layout=EMBEDDED_LAYOUT if embedded else FULL_LAYOUT
    ), (409 if request.method == "POST" else 200)


def _catalog(landing: Landing, items: list[LandingSubject], *, embedded: bool, heading: str | None = None):
    if landing.is_paused:
        return _paused(landing, embedded=embedded)
    if not items:
        abort(404)
    return render_template(
        "partners/landing.html",
        landing=landing,
        groups=grouped(items),
        links=_links(landing, items, embedded=embedded),
        heading=heading or landing.title,
        layout=EMBEDDED_LAYOUT if embedded else FULL_LAYOUT,
        embedded=embedded,
    )


def _form(landing: Landing, subject_slug: str, *, embedded: bool):
    if landing.is_paused:
        return _paused(landing, embedded=embedded)
    item = item_for(landing, subject_slug)
    if item is None:
        abort(404)
    carried = _carried(landing, embedded=embedded)
    confirmation = "partners.embedded_confirmation" if embedded else "partners.landing_confirmation"
    listing = "partners.embedded_landing" if embedded else "partners.landing"
    place = FormPlace(
        form_key=f"{landing.slug}/{item.subject.slug}",
        confirmation_url=url_for(confirmation, landing_slug=landing.slug, subject_slug=item.subject.slug, **carried),
        layout=EMBEDDED_LAYOUT if embedded else FULL_LAYOUT,
        back_url=url_for(listing, landing_slug=landing.slug, **carried) if len(offered_items(landing)) > 1 else None,
        carried=carried,
        title=item.title,
        landing=landing,
        channel="iframe" if embedded else "landing",
        origin_url=carried.get("origin_url"),
        embedded=embedded,
        prefill=_prefill(),
    )
    return form_flow(item.subject, place)


def _confirmation(landing: Landing, subject_slug: str, *, embedded: bool):
    item = item_for(landing, subject_slug)
    if item is None:
        abort(404)
    listing = "partners.embedded_landing" if embedded else "partners.landing"
    return confirmation_page(
        item.subject,
        layout=EMBEDDED_LAYOUT if embedded else FULL_LAYOUT,
        partner=landing.partner,
        back_url=url_for(listing, landing_slug=landing.slug, **_carried(landing, embedded=embedded)),
    )


# ---------------------------------------------------------------- the landing on this site


@bp.route("/partenaires/<landing_slug>")
def landing(landing_slug: str):
    found = _landing(landing_slug, embedded=False)
    return _catalog(found, offered_items(found), embedded=False)


@bp.route("/partenaires/<landing_slug>/demande/<subject_slug>", methods=["GET", "POST"])
@limiter.limit(_form_rate_limit, methods=["POST"])
def landing_form(landing_slug: str, subject_slug: str):
    return _form(_landing(landing_slug, embedded=False), subject_slug, embedded=False)


@bp.route("/partenaires/<landing_slug>/demande/<subject_slug>/merci")
def landing_confirmation(landing_slug: str, subject_slug: str):
    return _confirmation(_landing(landing_slug, embedded=False), subject_slug, embedded=False)


# ---------------------------------------------------------------- embedded: four shapes


@bp.route("/iframe/<landing_slug>")
def embedded_landing(landing_slug: str):
    """The whole landing."""
    found = _landing(landing_slug, embedded=True)
    return _catalog(found, offered_items(found), embedded=True)


@bp.route("/iframe/<landing_slug>/theme/<theme_slug>")
def embedded_theme(landing_slug: str, theme_slug: str):
    """One theme of the landing."""
    found = _landing(landing_slug, embedded=True)
    items = [item for item in offered_items(found) if item.subject.theme.slug == theme_slug]
    heading = items[0].subject.theme.label if items else None
    return _catalog(found, items, embedded=True, heading=heading)


@bp.route("/iframe/<landing_slug>/sujets")
def embedded_subjects(landing_slug: str):
    """A list of the landing's subjects: ``?sujet=a&sujet=b`` (in the order given)."""
    found = _landing(landing_slug, embedded=True)
    wanted = request.args.getlist("sujet")[:50]
    by_slug = {item.subject.slug: item for item in offered_items(found)}
    items = [by_slug[slug] for slug in dict.fromkeys(wanted) if slug in by_slug]
    return _catalog(found, items, embedded=True)


@bp.route("/iframe/<landing_slug>/demande/<subject_slug>", methods=["GET", "POST"])
@csrf.exempt
@limiter.limit(_form_rate_limit, methods=["POST"])
def embedded_form(landing_slug: str, subject_slug: str):
    """One subject's form (also the target of the other shapes' links)."""
    return _form(_landing(landing_slug, embedded=True), subject_slug, embedded=True)


@bp.route("/iframe/<landing_slug>/demande/<subject_slug>/merci")
def embedded_confirmation(landing_slug: str, subject_slug: str):
    return _confirmation(_landing(landing_slug, embedded=True), subject_slug, embedded=True)

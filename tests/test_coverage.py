"""The coverage view: for each subject an institution offers, which parts of its territory no
expert covers and which communes several do, per département, under the routing rule
(an expert's own zone replaces its antenne's); the page with its map and table,
scoped for partner referents; and a referent's first day, from the invitation to a fixed gap."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db as _db
from app.models import Commune, Expert, OutboundEmail
from app.services.accounts.users import create_user
from app.services.addressbook.addressbook import delete_antenne, delete_expert
from app.services.addressbook.coverage import coverage_report, departement_detail
from app.services.addressbook.routing import find_experts
from app.services.reference.geo import commune_codes
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, subject, zone
from tests.helpers import csrf_token_from, login, text

PASSWORD = "motdepasse-tres-long"


def communes(**where) -> int:
    conditions = [getattr(Commune, column) == value for column, value in where.items()]
    return _db.session.scalar(select(func.count()).select_from(Commune).where(*conditions))


def first_commune(departement: str) -> Commune:
    return _db.session.scalar(select(Commune).where(Commune.departement_code == departement).order_by(Commune.code))


def figures(report, slug: str) -> dict[str, tuple[str, int, int, int]]:
    """``{département: (state, communes, uncovered, overlapping)}`` of one subject."""
    found = report.subject(slug)
    assert found is not None, f"{slug} is not offered"
    return {d.code: (d.state, d.communes, d.uncovered, d.overlapping) for d in found.departements}


def plain(html: str) -> str:
    """The page's words without tags, spaces collapsed: what a reader reads."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def taking(antenne, slug: str, *own_zone: str, name: str | None = None) -> Expert:
    expert = ExpertFactory(antenne=antenne, **({"full_name": name} if name else {}))
    offer(expert, slug)
    for reference in own_zone:
        zone(expert, reference)
    return expert


# ---------------------------------------------------------------- the figures


def test_a_departement_zone_is_covered_by_its_antenne_experts(db):
    cma = InstitutionFactory(name="CMA Rhône")
    antenne = AntenneFactory(institution=cma)
    zone(antenne, "departement:69")
    taking(antenne, "tresorerie")

    report = coverage_report(cma)

    assert report.territory_communes == communes(departement_code="69")
    assert figures(report, "tresorerie") == {"69": ("covered", communes(departement_code="69"), 0, 0)}
    assert report.subject("tresorerie").experts == 1


def test_the_uncovered_departements_of_the_territory_are_reported(db):
    cma = InstitutionFactory(name="CMA Bretagne")
    antenne = AntenneFactory(institution=cma)
    zone(antenne, "region:53")
    lannion = first_commune("22")
    taking(antenne, "tresorerie", "departement:35", f"commune:{lannion.code}")

    result = figures(coverage_report(cma), "tresorerie")

    assert set(result) == {"22", "29", "35", "56"}
    assert result["35"] == ("covered", communes(departement_code="35"), 0, 0)
    assert result["22"] == ("partial", communes(departement_code="22"), communes(departement_code="22") - 1, 0)
    assert result["29"] == ("uncovered", communes(departement_code="29"), communes(departement_code="29"), 0)
    assert result["56"][0] == "uncovered"

    detail = departement_detail(cma, None, "tresorerie", "22")
    assert len(detail.uncovered) == communes(departement_code="22") - 1
    assert lannion.code not in {c.code for c in detail.uncovered}
    assert [c.name for c in detail.uncovered] == sorted(c.name for c in detail.uncovered)


def test_an_expert_own_zone_replaces_the_antenne_zone(db):
    cma = InstitutionFactory(name="CMA Rhône-Ain")
    antenne = AntenneFactory(institution=cma)
    zone(antenne, "departement:69")
    zone(antenne, "departement:01")
    # Lyon only, although the antenne covers two départements; and Belfort, outside the territory.
    taking(antenne, "tresorerie", "commune:69123", "departement:90")
    # Takes another subject through the antenne's zone: counts for that subject only.
    taking(antenne, "export")

    report = coverage_report(cma)
    result = figures(report, "tresorerie")

    assert set(result) == {"01", "69"}  # the expert's own zone adds nothing to the territory
    assert result["69"] == ("partial", communes(departement_code="69"), communes(departement_code="69") - 1, 0)
    assert result["01"][0] == "uncovered"
    assert {code: state for code, (state, *_rest) in figures(report, "export").items()} == {
        "01": "covered",
        "69": "covered",
    }


def test_overlaps_are_counted_per_commune_and_each_expert_once(db):
    cci = InstitutionFactory(name="CCI Lyon")
    antenne = AntenneFactory(institution=cci)
    zone(antenne, "departement:69")
    taking(antenne, "tresorerie", name="Anne Antenne")
    taking(antenne, "tresorerie", "epci:200046977", name="Bruno Métropole")
    # Not counted: a deleted expert, an expert without the subject, another institution's expert.
    delete_expert(taking(antenne, "tresorerie", name="Zoé Partie"))
    ExpertFactory(antenne=antenne)
    other = AntenneFactory(institution=InstitutionFactory(name="Autre"))
    zone(other, "departement:69")
    taking(other, "tresorerie")

    metropole = communes(epci_code="200046977")
    assert figures(coverage_report(cci), "tresorerie")["69"] == (
        "covered",
        communes(departement_code="69"),
        0,
        metropole,
    )

    # Lyon twice in one own zone (the commune and its département): still one expert there.
    taking(antenne, "tresorerie", "commune:69123", "departement:69", name="Chloé Double")
    assert figures(coverage_report(cci), "tresorerie")["69"][3] == communes(departement_code="69")
    detail = departement_detail(cci, None, "tresorerie", "69")
    lyon = next(c for c in detail.overlapping if c.code == "69123")
    assert lyon.experts == ["Anne Antenne", "Bruno Métropole", "Chloé Double"]
    groups = dict(detail.overlap_groups())
    assert len(groups[("Anne Antenne", "Bruno Métropole", "Chloé Double")]) == metropole


def test_a_national_territory_and_national_experts(db):
    bpi = InstitutionFactory(name="Bpifrance")
    national = AntenneFactory(institution=bpi, name="Direction nationale")
    zone(national, "national")
    taking(national, "tresorerie", name="Nadia Nationale")

    report = coverage_report(bpi)
    result = figures(report, "tresorerie")
    assert report.national
    assert report.territory_communes == communes()
    assert len(result) == _db.session.scalar(select(func.count(func.distinct(Commune.departement_code))))
    assert {state for state, *_rest in result.values()} == {"covered"}
    assert report.subject("tresorerie").national_experts == 1

    # A regional expert on top of the national one: Bretagne's communes have two experts.
    regional = AntenneFactory(institution=bpi, name="Bpifrance Rennes")
    zone(regional, "region:53")
    rennes = taking(regional, "tresorerie")
    result = figures(coverage_report(bpi), "tresorerie")
    assert sum(overlapping for *_rest, overlapping in result.values()) == communes(region_code="53")
    assert result["35"][3] == communes(departement_code="35") and result["69"][3] == 0

    # Another subject only the regional expert takes: the rest of France is blank.
    offer(rennes, "export")
    export = figures(coverage_report(bpi), "export")
    assert export["35"][0] == "covered" and export["69"][0] == "uncovered"


def test_the_figures_follow_the_routing_rule_commune_by_commune(db):
    """Every commune of the Territoire de Belfort (three EPCI): the experts the detail lists are
    exactly those routing would send a need to (for this institution), whatever the mix of zones."""
    cma = InstitutionFactory(name="CMA Bourgogne-Franche-Comté")
    region = AntenneFactory(institution=cma, name="Régionale")
    zone(region, "region:27")
    belfort = AntenneFactory(institution=cma, name="Belfort")
    zone(belfort, "commune:90010")  # Belfort, inside the EPCI below: one expert, counted once
    zone(belfort, "epci:200069052")
    taking(region, "export", name="Régis Région")
    taking(region, "tresorerie", "epci:200069060", name="Eve Epci")
    taking(belfort, "tresorerie", name="Bérénice Belfort")
    taking(belfort, "tresorerie", "commune:90001", "epci:200069052", name="Denis Double")
    taking(belfort, "export", name="Xavier Export")
    AntenneFactory(institution=cma, name="Vide")  # no zone, no expert

    detail = departement_detail(cma, None, "tresorerie", "90")
    listed = {c.code: c.experts for c in detail.uncovered + detail.overlapping}
    tresorerie = subject("tresorerie").id
    for commune in _db.session.scalars(select(Commune).where(Commune.departement_code == "90")):
        routed = sorted(r.expert for r in find_experts(tresorerie, commune.code) if r.institution_id == cma.id)
        if len(routed) == 1:
            assert commune.code not in listed, commune.code
        else:
            assert listed.get(commune.code) == routed, commune.code

    assert len(detail.uncovered) == communes(epci_code="249000241")
    assert len(detail.overlapping) == communes(epci_code="200069052")
    assert figures(coverage_report(cma), "tresorerie")["90"] == (
        "partial",
        communes(departement_code="90"),
        communes(epci_code="249000241"),
        communes(epci_code="200069052"),
    )


# Départements of several régions, metropolitan, Corsican and overseas, with every kind of zone.
ORACLE_DEPARTEMENTS = ("90", "25", "69", "2A", "971")


def test_the_coverage_sql_agrees_with_the_routing_oracle_across_departements(db):
    """Coverage re-implements the routing rule in SQL, counted per département (the routing
    query would cost one call per commune): for every commune of several départements, the
    experts coverage lists and its figures are exactly what ``find_experts`` answers."""
    cma = InstitutionFactory(name="CMA de plusieurs régions")
    bfc = AntenneFactory(institution=cma, name="Bourgogne-Franche-Comté")
    zone(bfc, "region:27")
    lyon = AntenneFactory(institution=cma, name="Lyon")
    zone(lyon, "epci:200046977")  # the Métropole de Lyon, inside the Rhône
    zone(lyon, "commune:69264")  # Villefranche-sur-Saône, outside it
    corse = AntenneFactory(institution=cma, name="Corse-du-Sud")
    zone(corse, "departement:2A")
    antilles = AntenneFactory(institution=cma, name="Guadeloupe")
    zone(antilles, "departement:971")
    taking(bfc, "tresorerie", name="Régine Région")
    taking(bfc, "tresorerie", "departement:25", name="Dora Doubs")  # own zone: the Doubs only
    taking(bfc, "tresorerie", "epci:200069052", "commune:90010", name="Eve Belfort")
    taking(lyon, "tresorerie", name="Léo Lyon")
    taking(lyon, "tresorerie", "departement:69", name="Rita Rhône")  # the whole Rhône, beyond the antenne
    taking(corse, "tresorerie", "commune:2A004", name="Ajaccio seul")
    taking(antilles, "tresorerie", name="Gaby Guadeloupe")
    taking(antilles, "export", name="Xavier Export")  # another subject: never counted
    taking(corse, "tresorerie", name="Paul Supprimé").deleted_at = func.now()
    _db.session.commit()

    tresorerie = subject("tresorerie").id
    # The territory of reference: the communes the live antennes' zones hold (the oracle's own reading).
    territory = {(z.kind, z.code) for antenne in (bfc, lyon, corse, antilles) for z in antenne.zones}
    by_departement = figures(coverage_report(cma), "tresorerie")
    for code in ORACLE_DEPARTEMENTS:
        detail = departement_detail(cma, None, "tresorerie", code)
        listed = {c.code: c.experts for c in detail.uncovered + detail.overlapping}
        inside = uncovered = overlapping = 0
        all_communes = list(_db.session.scalars(select(Commune).where(Commune.departement_code == code)))
        assert all_communes, code
        for commune in all_communes:
            routed = sorted(r.expert for r in find_experts(tresorerie, commune.code) if r.institution_id == cma.id)
            if not set(commune_codes(commune.code).references()) & territory:
                assert commune.code not in listed, (code, commune.code)
                continue
            inside += 1
            uncovered += not routed
            overlapping += len(routed) > 1
            if len(routed) == 1:
                assert commune.code not in listed, (code, commune.code)
            else:
                assert listed.get(commune.code) == routed, (code, commune.code)
        _state, total, reported_uncovered, reported_overlapping = by_departement[code]
        assert (total, reported_uncovered, reported_overlapping) == (inside, uncovered, overlapping), code
    # The oracle found each situation at least once, so the comparison meant something.
    states = {by_departement[code][0] for code in ORACLE_DEPARTEMENTS}
    assert {"covered", "partial"} <= states
    assert any(by_departement[code][3] for code in ORACLE_DEPARTEMENTS)


def test_an_antenne_scope_counts_that_antenne_only(db):
    cma = InstitutionFactory(name="CMA Bretagne")
    rennes = AntenneFactory(institution=cma, name="CMA Rennes")
    zone(rennes, "departement:35")
    brest = AntenneFactory(institution=cma, name="CMA Brest")
    zone(brest, "departement:29")
    taking(brest, "tresorerie", "departement:35")  # a Brest expert covering Rennes' département

    assert figures(coverage_report(cma, rennes), "tresorerie") == {
        "35": ("uncovered", communes(departement_code="35"), communes(departement_code="35"), 0)
    }
    assert figures(coverage_report(cma), "tresorerie")["35"][0] == "covered"


def test_a_deleted_antenne_leaves_the_territory_with_its_experts(db):
    cma = InstitutionFactory(name="CMA Bretagne")
    rennes = AntenneFactory(institution=cma)
    zone(rennes, "departement:35")
    brest = AntenneFactory(institution=cma)
    zone(brest, "departement:29")
    taking(brest, "tresorerie")
    delete_antenne(brest)

    assert figures(coverage_report(cma), "tresorerie") == {
        "35": ("uncovered", communes(departement_code="35"), communes(departement_code="35"), 0)
    }


def test_the_report_costs_the_same_queries_whatever_the_size(db, count_queries):
    small = InstitutionFactory(name="Petite")
    antenne = AntenneFactory(institution=small)
    zone(antenne, "departement:90")
    taking(antenne, "tresorerie")
    large = InstitutionFactory(name="Grande")
    for code in ("region:53", "region:84", "departement:75"):
        antenne = AntenneFactory(institution=large)
        zone(antenne, code)
        for slug in ("tresorerie", "export", "recrutement"):
            taking(antenne, slug)
            taking(antenne, slug, "departement:69")

    with count_queries() as few:
        coverage_report(small)
    with count_queries() as many:
        report = coverage_report(large)
    assert len(report.subjects) == 3
    assert many.count == few.count


# ---------------------------------------------------------------- the page


@pytest.fixture
def world(db):
    cma = InstitutionFactory(name="CMA Rhône-Ain", slug="cma-rhone-ain")
    lyon = AntenneFactory(institution=cma, name="CMA Lyon")
    zone(lyon, "departement:69")
    ain = AntenneFactory(institution=cma, name="CMA Bourg")
    zone(ain, "departement:01")
    taking(lyon, "tresorerie", name="Anne Lyon")
    taking(ain, "export", name="Bruno Bourg")
    other = InstitutionFactory(name="CCI Ailleurs", slug="cci-ailleurs")
    zone(AntenneFactory(institution=other, name="CCI Brest"), "departement:29")
    return {"cma": cma, "lyon": lyon, "ain": ain, "other": other}


def referent(client, email: str = "ref@cma.example", **scope):
    create_user(email, role="referent", password=PASSWORD, **(scope or {"institution_slug": "cma-rhone-ain"}))
    assert login(client, email).status_code == 302
    return client


def svg_of(html: str) -> str:
    found = re.search(r'<svg viewBox="[^"]+"[^>]*data-map="departements">.*?</svg>', html, re.S)
    assert found, "no map in the page"
    return found.group(0)


def test_a_referent_sees_the_map_and_the_table_of_their_institution(client, world):
    page = text(referent(client).get("/admin/couverture/?sujet=tresorerie"))

    assert "CMA Rhône-Ain — territoire de référence : l'union des zones de ses antennes" in plain(page)
    svg = svg_of(page)
    codes = re.findall(r'data-code="(\w+)" data-state="(\w+)"', svg)
    assert len(codes) == 96  # every metropolitan département once (no overseas one in this territory)
    states = dict(codes)
    assert states["69"] == "covered" and states["01"] == "uncovered" and states["29"] == "outside"
    assert set(states.values()) == {"covered", "uncovered", "outside"}
    rhone = re.search(r'<a href="([^"]+)"\s+class="dep dep-covered" data-code="69"[^>]*aria-label="([^"]+)">', svg)
    assert rhone.group(2) == "Rhône (69) : couvert"
    assert "<title>Rhône (69) : couvert</title>" in svg
    assert "<title>Ain (01) : non couvert</title>" in svg
    assert (
        '<g class="dep dep-outside" data-code="29" data-state="outside"><title>Finistère (29) : hors territoire</title>'
        in svg
    )
    assert "Couvert (1)" in page and "Non couvert (1)" in page and "Hors territoire (94)" in page
    # The table says the same, with a « Corriger » link on the gap.
    assert re.search(r'<tr data-departement="01" data-state="uncovered">', page)
    assert 'aria-label="Corriger : Ain (01), non couvert">Corriger</a>' in page
    assert "CCI Ailleurs" not in page


def test_overseas_departements_of_a_national_territory_are_squares_below_the_map(admin_client, db):
    bpi = InstitutionFactory(name="Bpifrance")
    national = AntenneFactory(institution=bpi)
    zone(national, "national")
    taking(national, "tresorerie")
    svg = svg_of(text(admin_client.get(f"/admin/couverture/?institution={bpi.id}")))
    total = _db.session.scalar(select(func.count(func.distinct(Commune.departement_code))))
    assert len(re.findall(r'data-code="\w+" data-state="covered"', svg)) == total
    assert re.search(r'data-code="974"[^>]*aria-label="La Réunion \(974\) : couvert">\s*<title>La Réunion', svg)
    assert ">974</text>" in svg


def test_an_other_institution_is_not_reachable_by_a_referent(client, world):
    referent(client)
    assert client.get(f"/admin/couverture/?institution={world['other'].id}").status_code == 404
    other_detail = f"/admin/couverture/departement?institution={world['other'].id}&sujet=tresorerie&departement=29"
    assert client.get(other_detail).status_code == 404
    # Their own institution named in the URL is fine; a département outside their territory is not.
    assert client.get(f"/admin/couverture/?institution={world['cma'].id}").status_code == 200
    assert client.get("/admin/couverture/departement?sujet=tresorerie&departement=29").status_code == 404


def test_an_antenne_referent_sees_their_antenne_only(client, world):
    referent(client, "ref-lyon@cma.example", antenne_id=world["lyon"].id)
    page = text(client.get("/admin/couverture/?sujet=export"))
    assert "Antenne CMA Lyon (CMA Rhône-Ain) — territoire de référence : la zone de l'antenne" in plain(page)
    states = dict(re.findall(r'data-code="(\w+)" data-state="(\w+)"', svg_of(page)))
    assert states["69"] == "uncovered" and states["01"] == "outside"
    assert client.get("/admin/couverture/departement?sujet=export&departement=01").status_code == 404


def test_staff_choose_the_institution(admin_client, world):
    page = text(admin_client.get("/admin/couverture/"))
    assert '<select id="coverage-institution" name="institution"' in page
    assert "CMA Rhône-Ain" in page and "CCI Ailleurs" in page and "data-map" not in page

    shown = text(admin_client.get(f"/admin/couverture/?institution={world['cma'].id}&sujet=inconnu"))
    assert "CMA Rhône-Ain — territoire de référence : l'union des zones de ses antennes" in plain(shown)
    # An unknown subject falls back to the first one, by label.
    assert len(re.findall(r'<a [^>]*aria-current="true">', shown)) == 1
    assert 'aria-current="true">Faire face à des difficultés de trésorerie</a>' in shown
    for bad in ("abc", "999999"):
        assert admin_client.get(f"/admin/couverture/?institution={bad}").status_code == 404
    offers_nothing = text(admin_client.get(f"/admin/couverture/?institution={world['other'].id}"))
    assert "ne propose encore aucun sujet" in offers_nothing


def test_the_departement_page_lists_the_gap_and_links_to_the_fix(client, world):
    referent(client)
    page = text(client.get("/admin/couverture/departement?sujet=tresorerie&departement=01"))
    assert "Ain (01) — Faire face à des difficultés de trésorerie" in page
    assert f"Communes sans expert ({communes(departement_code='01')})" in page
    assert f"{first_commune('01').name} ({first_commune('01').code})" in page
    bruno = _db.session.scalar(select(Expert).where(Expert.full_name == "Bruno Bourg"))
    assert "ne traite pas ce sujet ; zone de l'antenne ; antenne CMA Bourg" in page
    link = re.search(r'href="([^"]+)" aria-label="Corriger l\'expert Bruno Bourg">Corriger</a>', page)
    assert link and f"/admin/expert/edit/?id={bruno.id}" in link.group(1).replace("&amp;", "&")
    assert 'aria-label="Corriger l\'antenne CMA Bourg">Corriger</a>' in page
    for bad in ("sujet=tresorerie&departement=ZZ", "sujet=inconnu&departement=01", "departement=01"):
        assert client.get(f"/admin/couverture/departement?{bad}").status_code == 404


# ---------------------------------------------------------------- a referent's first day


HEADER = "institution,antenne,antenne_zone,expert,email,phone,job_title,subjects,expert_zone"


def test_an_invited_referent_sets_a_password_imports_their_experts_and_fixes_a_gap(app, client, db, admin_user):
    from app.services.accounts.accounts import invite_user

    cma = InstitutionFactory(name="CMA Bretagne", slug="cma-bretagne")
    invite_user("referente@cma.example", "referent", cma, by=admin_user, full_name="Rose Référente")
    invitation = _db.session.scalar(select(OutboundEmail).where(OutboundEmail.recipient == "referente@cma.example"))
    path = re.search(r"http://127\.0\.0\.1:5000(/invitation/\S+)", invitation.body_text).group(1)

    # 1. The invitation link: choose a password, land in the back office.
    form = client.get(path)
    chosen = client.post(
        path,
        data={
            "csrf_token": csrf_token_from(form.get_data(as_text=True)),
            "password": "vélo-rouge-tulipe-7-orage",
            "confirmation": "vélo-rouge-tulipe-7-orage",
        },
    )
    assert chosen.status_code == 302 and chosen.location == "/admin/"

    # 2. Import their experts: Rennes takes trésorerie, Brest only export.
    content = "\n".join(
        [
            HEADER,
            "CMA Bretagne,CMA Rennes,departement:35,Anne Rennes,anne@cma.example,,,tresorerie,",
            "CMA Bretagne,CMA Brest,departement:29,Bruno Brest,bruno@cma.example,,,export,",
        ]
    ).encode()
    upload_page = client.get("/admin/import/")
    preview = client.post(
        "/admin/import/",
        data={"csrf_token": csrf_token_from(text(upload_page)), "file": (io.BytesIO(content), "cma.csv")},
        content_type="multipart/form-data",
    )
    html = text(preview)
    token = re.search(r'name="token" type="hidden" value="([0-9a-f]{32})"', html).group(1)
    done = client.post("/admin/import/confirmer", data={"csrf_token": csrf_token_from(html), "token": token})
    assert done.status_code == 302

    # 3. The coverage view shows Finistère blank for trésorerie; « Corriger » leads to Bruno.
    page = text(client.get("/admin/couverture/?sujet=tresorerie"))
    assert re.search(r'<tr data-departement="29" data-state="uncovered">', page)
    fix = re.search(r'<a href="([^"]+)" aria-label="Corriger : Finistère \(29\), non couvert">', page).group(1)
    detail = text(client.get(fix.replace("&amp;", "&")))
    edit_url = re.search(r'href="([^"]+)" aria-label="Corriger l\'expert Bruno Brest">', detail).group(1)
    edit_url = edit_url.replace("&amp;", "&")
    edit_page = text(client.get(edit_url))
    assert "Bruno Brest" in edit_page

    # 4. Give Bruno trésorerie too, save, and come back to a covered Finistère.
    bruno = _db.session.scalar(select(Expert).where(Expert.email == "bruno@cma.example"))
    saved = client.post(
        edit_url,
        data={
            "csrf_token": csrf_token_from(edit_page),
            "antenne": str(bruno.antenne_id),
            "full_name": "Bruno Brest",
            "email": "bruno@cma.example",
            "phone": "",
            "job_title": "",
            "offered_subjects": [str(subject("export").id), str(subject("tresorerie").id)],
            "zone": "",
            "absent_from": "",
            "absent_until": "",
        },
    )
    assert saved.status_code == 302, text(saved)
    back = text(client.get(saved.location))
    assert "Finistère (29) — Faire face à des difficultés de trésorerie" in back
    assert "Communes sans expert" not in back
    page = text(client.get("/admin/couverture/?sujet=tresorerie"))
    assert re.search(r'<tr data-departement="29" data-state="covered">', page)
    assert 'data-code="29" data-state="covered"' in page


def test_coverage_says_when_filters_narrow_a_subject(db):
    """Issue 14: the communes stay counted, and the subject says which filters narrow them."""
    from app.models import RoutingFilter, RoutingFilterSubject

    cma = InstitutionFactory(name="CMA Rhône")
    antenne = AntenneFactory(institution=cma)
    zone(antenne, "departement:69")
    expert = taking(antenne, "tresorerie")
    taking(antenne, "recrutement")
    _db.session.add(RoutingFilter(institution=cma, activities_accepted="artisanale"))
    limited = RoutingFilter(expert=expert, min_headcount=10)
    limited.subject_links = [RoutingFilterSubject(subject=subject("tresorerie"))]
    _db.session.add(limited)
    other = InstitutionFactory(name="Ailleurs")
    _db.session.add(RoutingFilter(institution=other, min_years=2))
    _db.session.commit()

    report = coverage_report(cma)
    tresorerie, recrutement = report.subject("tresorerie"), report.subject("recrutement")
    assert len(tresorerie.narrowed_by) == 2 and len(recrutement.narrowed_by) == 1
    assert "natures d'activité acceptées artisanale" in recrutement.narrowed_by[0]
    assert any("effectif minimum 10" in text for text in tresorerie.narrowed_by)
    assert figures(report, "tresorerie")["69"][0] == "covered"

"""Partner referents write inside their scope only: edits within it succeed and are audited,
forged forms that would move a record out of it are refused in French with nothing saved, and
an antenne referent sees and changes their antenne only (``scope_world`` in conftest)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app import policy
from app.models import (
    Antenne,
    AuditEvent,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    Match,
    Need,
    Subject,
    Theme,
    User,
    Zone,
)
from app.services.errors import ServiceError
from tests.factories import subject
from tests.helpers import body, csrf_token_from, post_action, post_form


def expert_form(expert: Expert, **changes) -> dict:
    data = {
        "antenne": str(expert.antenne_id),
        "full_name": expert.full_name,
        "email": expert.email,
        "phone": expert.phone or "",
        "job_title": expert.job_title or "",
        "offered_subjects": [str(link.institution_subject.subject_id) for link in expert.subjects],
        "zone": "",
    }
    data.update(changes)
    return data


def updates_by(db, obj, actor: str) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.object_type == type(obj).__name__,
                AuditEvent.object_id == obj.id,
                AuditEvent.actor == actor,
            )
        )
    )


def fresh(db, model, ident):
    db.session.expire_all()
    return db.session.get(model, ident)


# ---------------------------------------------------------------- edits within the scope


def test_an_institution_referent_moves_an_expert_between_its_antennes_changes_subjects_and_zone(
    db, scope_world, institution_referent_client
):
    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])
    grenoble = scope_world.ids[Antenne]["A2"]
    url = f"/admin/expert/edit/?id={alice.id}"
    data = expert_form(
        alice,
        antenne=str(grenoble),
        job_title="Conseillère emploi",
        offered_subjects=[str(subject("recrutement").id), str(subject("formation").id)],
        zone="departement:38 departement:73",
    )

    response = post_form(institution_referent_client, url, data)

    assert response.status_code == 302, body(response)
    alice = fresh(db, Expert, alice.id)
    assert alice.antenne_id == grenoble
    assert alice.job_title == "Conseillère emploi"
    assert sorted(link.institution_subject.subject.slug for link in alice.subjects) == ["formation", "recrutement"]
    assert sorted(z.reference for z in alice.zones) == ["departement:38", "departement:73"]
    events = updates_by(db, alice, "referente@alpha.example")
    assert events, "the referent's change is not in the journal"
    assert any("antenne_id" in (event.changes or {}) for event in events)
    assert all(event.user_id == scope_world.institution_referent.id for event in events)


def test_an_institution_referent_creates_an_antenne_and_an_expert_in_its_institution(
    db, scope_world, institution_referent_client
):
    client = institution_referent_client
    response = post_form(
        client,
        "/admin/antenne/new/",
        {"institution": str(scope_world.alpha.id), "name": "Alpha Villeurbanne", "zone": "commune:69266"},
    )
    assert response.status_code == 302, body(response)
    antenne = db.session.scalar(select(Antenne).where(Antenne.name == "Alpha Villeurbanne"))
    assert antenne.institution_id == scope_world.alpha.id
    assert [z.reference for z in antenne.zones] == ["commune:69266"]

    response = post_form(
        client,
        "/admin/expert/new/",
        {
            "antenne": str(antenne.id),
            "full_name": "Victor Alpha",
            "email": "victor@alpha.example",
            "offered_subjects": [str(subject("recrutement").id)],
        },
    )
    assert response.status_code == 302, body(response)
    victor = db.session.scalar(select(Expert).where(Expert.email == "victor@alpha.example"))
    assert victor.antenne_id == antenne.id
    assert updates_by(db, victor, "referente@alpha.example")


def test_an_antenne_referent_edits_its_antenne_zone_and_its_expert(db, scope_world, antenne_referent_client):
    client = antenne_referent_client
    lyon = scope_world.ids[Antenne]["A1"]
    response = post_form(
        client,
        f"/admin/antenne/edit/?id={lyon}",
        {"institution": str(scope_world.alpha.id), "name": "Alpha Lyon", "zone": "departement:69 departement:01"},
    )
    assert response.status_code == 302, body(response)
    assert sorted(z.reference for z in fresh(db, Antenne, lyon).zones) == ["departement:01", "departement:69"]

    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])
    response = post_form(client, f"/admin/expert/edit/?id={alice.id}", expert_form(alice, phone="04 72 00 00 00"))
    assert response.status_code == 302, body(response)
    assert fresh(db, Expert, alice.id).phone == "04 72 00 00 00"
    assert updates_by(db, alice, "referent@alpha-lyon.example")


def test_an_institution_referent_edits_its_offer(db, scope_world, institution_referent_client):
    offer = db.session.get(InstitutionSubject, scope_world.ids[InstitutionSubject]["A1"])
    response = post_form(
        institution_referent_client,
        f"/admin/institution_subject/edit/?id={offer.id}",
        {"institution": str(scope_world.alpha.id), "subject": str(offer.subject_id), "description": "Sur rendez-vous"},
    )
    assert response.status_code == 302, body(response)
    assert fresh(db, InstitutionSubject, offer.id).description == "Sur rendez-vous"


def test_an_institution_referent_deletes_its_expert_but_not_another_institutions(
    db, scope_world, institution_referent_client
):
    quentin, zoe = scope_world.ids[Expert]["A2"], scope_world.ids[Expert]["B"]

    response = post_action(institution_referent_client, "expert", "supprimer", [quentin, zoe])

    assert response.status_code == 302
    assert fresh(db, Expert, quentin).deleted_at is not None
    assert fresh(db, Expert, zoe).deleted_at is None


# ---------------------------------------------------------------- forged forms


def test_a_forged_post_moving_an_expert_to_another_institutions_antenne_is_refused(
    db, scope_world, institution_referent_client
):
    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])
    before = db.session.scalar(select(func.count(AuditEvent.id)))

    response = post_form(
        institution_referent_client,
        f"/admin/expert/edit/?id={alice.id}",
        expert_form(alice, antenne=str(scope_world.ids[Antenne]["B"]), full_name="Alice déplacée"),
    )

    assert response.status_code == 200
    assert "Choisissez l&#39;antenne parmi celles proposées." in body(response)
    assert "Alice déplacée" in body(response)  # the form comes back as typed, nothing lost
    alice = fresh(db, Expert, alice.id)
    assert alice.antenne_id == scope_world.ids[Antenne]["A1"] and alice.full_name == "Alice Alpha"
    assert db.session.scalar(select(func.count(AuditEvent.id))) == before


def test_the_policy_refuses_the_move_even_when_the_form_accepts_the_antenne(db, scope_world, app):
    """The form's choices are the first wall; check_record is the second, with a French reason."""
    referent = db.session.get(User, scope_world.institution_referent.id)
    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])
    alice.antenne = db.session.get(Antenne, scope_world.ids[Antenne]["B"])
    with pytest.raises(ServiceError, match="ne fait pas partie de votre périmètre"):
        policy.check_record(referent, alice)
    db.session.rollback()


def test_an_antenne_referent_cannot_move_its_expert_to_a_sister_antenne(db, scope_world, antenne_referent_client):
    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])

    response = post_form(
        antenne_referent_client,
        f"/admin/expert/edit/?id={alice.id}",
        expert_form(alice, antenne=str(scope_world.ids[Antenne]["A2"])),
    )

    assert response.status_code == 200
    assert fresh(db, Expert, alice.id).antenne_id == scope_world.ids[Antenne]["A1"]


def test_a_forged_expert_creation_in_another_institution_is_refused(db, scope_world, institution_referent_client):
    response = post_form(
        institution_referent_client,
        "/admin/expert/new/",
        {"antenne": str(scope_world.ids[Antenne]["B"]), "full_name": "Intrus", "email": "intrus@alpha.example"},
    )
    assert response.status_code == 200
    assert db.session.scalar(select(Expert).where(Expert.email == "intrus@alpha.example")) is None


@pytest.mark.parametrize("forged", ["abc", "-1", "99999999999999999999", ""])
def test_a_malformed_antenne_id_is_an_invalid_choice_not_a_crash(db, scope_world, institution_referent_client, forged):
    response = post_form(
        institution_referent_client,
        "/admin/expert/new/",
        {"antenne": forged, "full_name": "Intrus", "email": "intrus@alpha.example"},
    )
    assert response.status_code == 200
    assert db.session.scalar(select(Expert).where(Expert.email == "intrus@alpha.example")) is None


def test_a_forged_antenne_in_another_institution_is_refused(db, scope_world, institution_referent_client):
    response = post_form(
        institution_referent_client,
        "/admin/antenne/new/",
        {"institution": str(scope_world.zorglub.id), "name": "Zorglub Intrus", "zone": "departement:75"},
    )
    assert response.status_code == 200
    assert "Ce choix ne fait pas partie des valeurs proposées." in body(response)
    assert db.session.scalar(select(Antenne).where(Antenne.name == "Zorglub Intrus")) is None


def test_a_forged_offer_for_another_institution_is_refused(db, scope_world, institution_referent_client):
    response = post_form(
        institution_referent_client,
        "/admin/institution_subject/new/",
        {"institution": str(scope_world.zorglub.id), "subject": str(subject("formation").id)},
    )
    assert response.status_code == 200
    assert (
        db.session.scalar(
            select(InstitutionSubject).where(
                InstitutionSubject.institution_id == scope_world.zorglub.id,
                InstitutionSubject.subject_id == subject("formation").id,
            )
        )
        is None
    )


def test_a_referent_cannot_rename_its_institution(db, scope_world, institution_referent_client):
    client = institution_referent_client
    token = csrf_token_from(body(client.get("/admin/")))
    url = f"/admin/institution/edit/?id={scope_world.alpha.id}"
    assert client.get(url).status_code == 403
    response = client.post(url, data={"name": "Alpha Renommée", "slug": "", "csrf_token": token})
    assert response.status_code == 403
    assert fresh(db, Institution, scope_world.alpha.id).name == "Alpha Conseil"


def test_a_referent_cannot_reach_another_institutions_expert_by_its_url(db, scope_world, institution_referent_client):
    client = institution_referent_client
    zoe = db.session.get(Expert, scope_world.ids[Expert]["B"])
    token = csrf_token_from(body(client.get("/admin/")))
    assert client.get(f"/admin/expert/details/?id={zoe.id}").status_code == 404
    assert client.get(f"/admin/expert/edit/?id={zoe.id}").status_code == 404
    response = client.post(
        f"/admin/expert/edit/?id={zoe.id}",
        data={**expert_form(zoe, full_name="Zoé modifiée"), "csrf_token": token},
    )
    assert response.status_code == 404
    assert fresh(db, Expert, zoe.id).full_name == "Zoé Zorglub"


# ---------------------------------------------------------------- the antenne referent


def test_an_antenne_referent_sees_only_its_antenne(scope_world, antenne_referent_client):
    client = antenne_referent_client
    antennes = body(client.get("/admin/antenne/"))
    assert "Alpha Lyon" in antennes and "Quetzal Grenoble" not in antennes
    experts = body(client.get("/admin/expert/"))
    assert "Alice Alpha" in experts and "Quentin Quetzal" not in experts
    lookup = client.get("/admin/expert/ajax/lookup/?name=antenne&query=").get_json()
    assert [text for _id, text in lookup] == ["Alpha Lyon — Alpha Conseil"]
    needs = body(client.get("/admin/need/export/csv/"))
    assert "Alpha Boulangerie" in needs and "Quetzal Menuiserie" not in needs


def test_an_antenne_referent_cannot_create_or_delete_antennes(db, scope_world, antenne_referent_client):
    client = antenne_referent_client
    lyon = scope_world.ids[Antenne]["A1"]
    token = csrf_token_from(body(client.get("/admin/")))
    assert client.get("/admin/antenne/new/").status_code == 403
    response = client.post(
        "/admin/antenne/new/",
        data={"institution": str(scope_world.alpha.id), "name": "Alpha Bis", "csrf_token": token},
    )
    assert response.status_code == 403
    response = client.post(
        "/admin/antenne/action/", data={"action": "supprimer", "rowid": [str(lyon)], "csrf_token": token}
    )
    assert response.status_code == 403
    assert fresh(db, Antenne, lyon).deleted_at is None
    assert db.session.scalar(select(Antenne).where(Antenne.name == "Alpha Bis")) is None
    page = body(client.get("/admin/antenne/"))
    assert "/admin/antenne/new/" not in page  # no « Créer » button either


def test_an_antenne_referent_reads_the_offer_but_cannot_change_it(db, scope_world, antenne_referent_client):
    client = antenne_referent_client
    offer = scope_world.ids[InstitutionSubject]["A1"]
    assert client.get("/admin/institution_subject/").status_code == 200
    assert client.get(f"/admin/institution_subject/edit/?id={offer}").status_code == 403
    assert client.get("/admin/institution_subject/new/").status_code == 403


# ---------------------------------------------------------------- the policy itself


def test_scope_query_per_role(db, scope_world):
    staff = db.session.get(User, scope_world.staff.id)
    institution = db.session.get(User, scope_world.institution_referent.id)
    antenne = db.session.get(User, scope_world.antenne_referent.id)

    def visible(user, model):
        pk = model.__mapper__.primary_key[0]
        return set(db.session.scalars(policy.scope_query(user, model, select(pk))))

    ids = scope_world.ids
    for model in (Antenne, Expert, Need, Match):
        assert visible(staff, model) >= set(ids[model].values())
        assert visible(institution, model) == {ids[model]["A1"], ids[model]["A2"]}
        assert visible(antenne, model) == {ids[model]["A1"]}
    assert visible(institution, Institution) == visible(antenne, Institution) == {scope_world.alpha.id}
    assert visible(antenne, InstitutionSubject) == {ids[InstitutionSubject]["A1"]}
    expert_links = {link.id for link in db.session.get(Expert, ids[Expert]["A1"]).subjects}
    assert visible(antenne, ExpertSubject) == expert_links
    lyon_zones = {zone.id for zone in db.session.get(Antenne, ids[Antenne]["A1"]).zones}
    assert visible(antenne, Zone) == lyon_zones
    assert visible(antenne, Subject) == visible(staff, Subject) != set()
    assert visible(antenne, Theme) == visible(staff, Theme)
    assert visible(institution, User) == set()  # any other model: nothing
    assert visible(None, Expert) == set()


def test_a_referent_whose_institution_is_deleted_sees_nothing(db, scope_world, logged_in):
    client = logged_in(scope_world.institution_referent)
    alpha = db.session.get(Institution, scope_world.alpha.id)
    from app.models.base import utcnow

    alpha.deleted_at = utcnow()
    db.session.commit()
    assert client.get("/admin/expert/").status_code == 403
    referent = db.session.get(User, scope_world.institution_referent.id)
    assert not policy.can_access_backoffice(referent)
    assert db.session.scalar(policy.scope_query(referent, Expert, select(func.count(Expert.id)))) == 0


def test_check_record_keeps_subjects_and_zones_with_their_owner(db, scope_world):
    referent = db.session.get(User, scope_world.antenne_referent.id)
    quentin = db.session.get(Expert, scope_world.ids[Expert]["A2"])
    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])
    with db.session.no_autoflush:
        with pytest.raises(ServiceError):
            policy.check_record(referent, Zone(expert=quentin, kind="departement", code="38"), policy.CREATE)
        with pytest.raises(ServiceError):
            policy.check_record(referent, ExpertSubject(expert=quentin, institution_subject_id=1), policy.CREATE)
        policy.check_record(referent, Zone(expert=alice, kind="departement", code="69"), policy.CREATE)
        with pytest.raises(ServiceError, match="pas le droit de créer des antennes"):
            policy.check_record(referent, Antenne(institution=alice.antenne.institution, name="X"), policy.CREATE)
        with pytest.raises(ServiceError, match="pas le droit de modifier des institutions"):
            policy.check_record(referent, alice.antenne.institution)
    db.session.rollback()
    assert policy.can_edit(referent, Antenne) and not policy.can_create(referent, Antenne)
    assert not policy.can_edit(referent, Need) and not policy.can_edit(referent, Match)


@pytest.mark.parametrize("forged", ["abc", "99999999999999999999", "-99999999999999999999", "1.5"])
def test_a_malformed_id_in_a_url_is_a_404(scope_world, institution_referent_client, forged):
    client = institution_referent_client
    assert client.get(f"/admin/expert/details/?id={forged}").status_code == 404
    assert client.get(f"/admin/expert/edit/?id={forged}").status_code == 404


# ---------------------------------------------------------------- cost


def _queries_for(client, count_queries, url: str) -> int:
    with count_queries() as counter:
        response = client.get(url)
        assert response.status_code == 200
    return counter.count


def _more_experts(db, scope_world, count: int) -> None:
    from tests.factories import ExpertFactory, offer

    lyon = db.session.get(Antenne, scope_world.ids[Antenne]["A1"])
    for _ in range(count):
        offer(ExpertFactory(antenne=lyon), "recrutement")


@pytest.mark.parametrize("url", ["/admin/", "/admin/expert/", "/admin/antenne/", "/admin/expert/export/csv/"])
def test_a_referents_pages_cost_the_same_whatever_the_number_of_rows(
    db, scope_world, antenne_referent_client, count_queries, url
):
    _more_experts(db, scope_world, 3)
    few = _queries_for(antenne_referent_client, count_queries, url)
    _more_experts(db, scope_world, 20)
    many = _queries_for(antenne_referent_client, count_queries, url)
    assert few == many


# ---------------------------------------------------------------- rows written on the side


def test_an_antenne_referent_picks_among_the_subjects_its_institution_offers(db, scope_world, antenne_referent_client):
    client = antenne_referent_client
    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])
    url = f"/admin/expert/edit/?id={alice.id}"
    form = body(client.get(url))
    assert f'value="{subject("recrutement").id}"' in form
    assert f'value="{subject("formation").id}"' not in form

    response = post_form(client, url, expert_form(alice, offered_subjects=[str(subject("formation").id)]))

    assert response.status_code == 200
    assert "Ce choix ne fait pas partie des valeurs proposées." in body(response)
    offers = db.session.scalars(
        select(InstitutionSubject.subject_id).where(InstitutionSubject.institution_id == scope_world.alpha.id)
    )
    assert set(offers) == {subject("recrutement").id}


def test_every_row_a_referents_save_writes_is_checked(app, db, scope_world):
    """Whatever a hook or a service adds on the side (an offer, a zone) passes the policy too."""
    referent = db.session.get(User, scope_world.antenne_referent.id)
    quentin = db.session.get(Expert, scope_world.ids[Expert]["A2"])
    alice = db.session.get(Expert, scope_world.ids[Expert]["A1"])
    with app.test_request_context(), policy.guarded_writes(referent):
        db.session.add(InstitutionSubject(institution=scope_world.alpha, subject=subject("formation")))
        with pytest.raises(ServiceError, match="pas le droit de créer l'offre"):
            db.session.flush()
        db.session.rollback()

        quentin = db.session.get(Expert, quentin.id)
        quentin.zones.append(Zone(kind="departement", code="38"))
        with pytest.raises(ServiceError, match="périmètre"):
            db.session.flush()
        db.session.rollback()

        alice = db.session.get(Expert, alice.id)
        alice.zones.append(Zone(kind="departement", code="69"))
        db.session.commit()
    assert [z.reference for z in fresh(db, Expert, alice.id).zones] == ["departement:69"]


def test_a_shared_need_shows_a_referent_only_their_own_experts(scope_world, logged_in, db):
    """A need sent to Alpha's and Zorglub's experts: Alpha's referent sees their match only,
    counts only it, and not the experts' thread (which names everyone); staff see both."""
    need_id = scope_world.ids[Need]["A1"]
    db.session.add(Match(need_id=need_id, expert_id=scope_world.ids[Expert]["B"], status="taking_care"))
    db.session.commit()

    referent = logged_in(scope_world.institution_referent)
    page = referent.get(f"/admin/need/details/?id={need_id}").get_data(as_text=True)
    assert "Alice Alpha" in page
    assert "zorglub" not in page.lower()
    assert 'id="discussion"' not in page
    listing = referent.get("/admin/need/").get_data(as_text=True)
    assert "zorglub" not in listing.lower()

    staff = logged_in(scope_world.staff).get(f"/admin/need/details/?id={need_id}").get_data(as_text=True)
    assert "Alice Alpha" in staff and "Zoé Zorglub" in staff
    assert 'id="discussion"' in staff

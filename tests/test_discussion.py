"""The need's discussion thread (services.discussion): who may write, what is stored, how it is
shown (escaped, links clickable), and the grouped email notifications."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import Comment, OutboundEmail
from app.models.base import utcnow
from app.services.accounts.users import create_user
from app.services.addressbook.addressbook import delete_expert
from app.services.errors import ServiceError
from app.services.messaging.discussion import (
    MAX_BODY_LENGTH,
    author_label,
    linkify,
    notify_pending_comments,
    post_comment,
    thread,
)
from app.services.messaging.links import expert_token, match_for_token
from app.services.transactions import transaction
from tests.factories import ExpertFactory, make_need
from tests.helpers import csrf_token_from

LATER = timedelta(seconds=61)


@pytest.fixture
def need(db):
    """Three experts: the first two still involved, the third declined."""
    need = make_need(3, statuses=("quo", "taking_care", "not_for_me"))
    first = need.matches[0].expert
    first.full_name = "Claire Martin"
    _db.session.commit()
    return need


@pytest.fixture
def grouped(app, monkeypatch):
    """Notifications left to the periodic job, as with Redis (the test app has no worker, so it
    would otherwise notify right after each comment)."""
    monkeypatch.setitem(app.config, "COMMENT_NOTIFY_INLINE", False)


def _emails() -> dict[str, OutboundEmail]:
    _db.session.expire_all()
    return {email.recipient: email for email in _db.session.scalars(select(OutboundEmail).order_by(OutboundEmail.id))}


# ---------------------------------------------------------------- posting


def test_an_expert_of_the_need_posts_a_stripped_comment(need, grouped):
    expert = need.matches[0].expert
    with transaction():
        comment = post_comment(need, body="  Je l'appelle demain.\r\nÀ suivre\t!  \n", expert=expert)
    _db.session.expire_all()
    stored = _db.session.get(Comment, comment.id)
    assert stored.body == "Je l'appelle demain.\nÀ suivre\t!"
    assert (stored.expert_id, stored.user_id, stored.source, stored.notified_at) == (expert.id, None, "web", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "Le message est vide"),
        ("   \n\t ", "Le message est vide"),
        ("x" * (MAX_BODY_LENGTH + 1), "trop long"),
        ("Bonjour\x00", "caractères de contrôle"),
        ("Bonjour \x1b[31mrouge", "caractères de contrôle"),
    ],
)
def test_a_body_empty_too_long_or_with_control_characters_is_refused(need, body, message):
    with pytest.raises(ServiceError, match=message):
        post_comment(need, body=body, expert=need.matches[0].expert)
    assert _db.session.scalars(select(Comment)).all() == []


def test_the_longest_body_is_accepted(need, grouped):
    with transaction():
        post_comment(need, body="x" * MAX_BODY_LENGTH, expert=need.matches[0].expert)
    assert len(_db.session.scalar(select(Comment)).body) == MAX_BODY_LENGTH


def test_only_the_experts_of_the_need_and_staff_may_write(need, admin_user, grouped):
    outsider = ExpertFactory()
    _db.session.commit()
    with pytest.raises(ServiceError, match="Seuls les experts qui ont reçu ce besoin"):
        post_comment(need, body="Bonjour", expert=outsider)

    deleted = need.matches[1].expert
    delete_expert(deleted)
    _db.session.commit()
    with pytest.raises(ServiceError, match="supprimé"):
        post_comment(need, body="Bonjour", expert=deleted)

    referent = create_user(
        "referent@cci.example", role="referent", institution_slug=need.matches[0].expert.antenne.institution.slug
    )
    with pytest.raises(ServiceError, match="Seule l'équipe"):
        post_comment(need, body="Bonjour", user=referent)
    with pytest.raises(ServiceError, match="un seul auteur"):
        post_comment(need, body="Bonjour", expert=need.matches[0].expert, user=admin_user)
    with pytest.raises(ServiceError, match="un seul auteur"):
        post_comment(need, body="Bonjour")
    assert _db.session.scalars(select(Comment)).all() == []

    # A declined expert is still part of the conversation's history: they may write.
    with transaction():
        post_comment(need, body="Je ne peux pas, désolé.", expert=need.matches[2].expert)
    with transaction():
        post_comment(need, body="Merci à tous.", user=admin_user, source="admin")
    assert [c.source for c in thread(need)] == ["web", "admin"]


def test_the_thread_reads_oldest_first_with_its_authors_in_a_fixed_number_of_queries(
    need, admin_user, grouped, count_queries
):
    for index, match in enumerate(need.matches):
        with transaction():
            post_comment(need, body=f"Message {index}", expert=match.expert)
    with transaction():
        post_comment(need, body="Message de l'équipe", user=admin_user, source="admin")
    _db.session.expire_all()
    assert need.id  # loaded again before counting
    with count_queries() as counter:
        comments = thread(need)
        labels = [author_label(comment) for comment in comments]
    assert [c.body for c in comments] == ["Message 0", "Message 1", "Message 2", "Message de l'équipe"]
    antenne = need.matches[0].expert.antenne
    assert labels[0] == f"Claire Martin — {antenne.name} ({antenne.institution.name})"
    assert labels[-1] == "Équipe Place des Entreprises"
    # comments, experts, antennes, institutions, users: whatever the number of comments.
    assert counter.count <= 5


# ---------------------------------------------------------------- rendering


def test_linkify_escapes_then_links_http_addresses_only():
    html = str(linkify("<script>alert('x')</script>\nVoir https://exemple.fr/aide?a=1&b=2. Ou javascript:alert(1)"))
    assert "<script>" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<br>" in html
    assert (
        '<a href="https://exemple.fr/aide?a=1&amp;b=2" rel="noopener noreferrer nofollow">'
        "https://exemple.fr/aide?a=1&amp;b=2</a>." in html
    )
    assert html.count("<a ") == 1  # javascript: stays text
    quoted = str(linkify('http://x.fr/"onmouseover="alert(1)'))
    assert 'href="http://x.fr/"' in quoted and "onmouseover=" in quoted and '"onmouseover' not in quoted
    assert str(linkify("(voir https://fr.wikipedia.org/wiki/Lyon_(ville))")).endswith(
        ">https://fr.wikipedia.org/wiki/Lyon_(ville)</a>)"
    )


# ---------------------------------------------------------------- the expert's page


def test_the_expert_writes_on_the_thread_from_the_page(client, need, grouped):
    url = f"/expert/{expert_token(need.matches[0])}"
    html = client.get(url).get_data(as_text=True)
    assert "Aucun message pour le moment." in html
    assert '<textarea class="fr-input" id="comment-body" name="body"' in html
    response = client.post(
        f"{url}/commentaires",
        data={"body": "<script>alert(1)</script> voir https://exemple.fr", "csrf_token": csrf_token_from(html)},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"{url}#discussion"
    html = client.get(url).get_data(as_text=True)
    assert "votre message est dans la discussion" in html
    assert "Claire Martin — " in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert '<a href="https://exemple.fr" rel="noopener noreferrer nofollow">' in html
    [comment] = _db.session.scalars(select(Comment)).all()
    assert comment.expert_id == need.matches[0].expert_id


def test_a_refused_comment_shows_the_page_again_with_the_error_and_the_text(client, need):
    url = f"/expert/{expert_token(need.matches[0])}"
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    response = client.post(f"{url}/commentaires", data={"body": "   ", "csrf_token": token})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="comment-body-error" class="fr-error-text">Le message est vide' in html
    assert 'aria-invalid="true"' in html
    response = client.post(f"{url}/commentaires", data={"body": "Bonjour\x07", "csrf_token": token})
    assert response.status_code == 422
    assert ">Bonjour\x07</textarea>" in response.get_data(as_text=True)
    assert _db.session.scalars(select(Comment)).all() == []


def test_a_revoked_or_forged_link_cannot_comment(client, need):
    match = need.matches[0]
    url = f"/expert/{expert_token(match)}"
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    response = client.post("/expert/pas-un-jeton/commentaires", data={"body": "Bonjour", "csrf_token": token})
    assert response.status_code == 404
    assert "Ce lien n&#39;est pas valide" in response.get_data(as_text=True)
    delete_expert(match.expert)
    _db.session.commit()
    response = client.post(f"{url}/commentaires", data={"body": "Bonjour", "csrf_token": token})
    assert response.status_code == 404
    assert "Bonjour" not in response.get_data(as_text=True)
    assert _db.session.scalars(select(Comment)).all() == []


def test_a_comment_without_csrf_token_is_refused(client, need):
    response = client.post(f"/expert/{expert_token(need.matches[0])}/commentaires", data={"body": "Bonjour"})
    assert response.status_code == 400
    assert _db.session.scalars(select(Comment)).all() == []


# ---------------------------------------------------------------- the back office


def test_staff_read_and_write_the_thread_from_the_need_page(admin_client, need, grouped):
    with transaction():
        post_comment(need, body="Je prends contact https://exemple.fr", expert=need.matches[0].expert)
    page = admin_client.get(f"/admin/need/details/?id={need.id}")
    html = page.get_data(as_text=True)
    assert "Discussion entre experts" in html and "Claire Martin — " in html
    assert '<a href="https://exemple.fr" rel="noopener noreferrer nofollow">' in html
    response = admin_client.post(
        "/admin/need/commenter/",
        data={"id": need.id, "body": "Merci Claire.", "csrf_token": csrf_token_from(html)},
    )
    assert response.status_code == 303
    comments = thread(need)
    assert comments[-1].body == "Merci Claire." and comments[-1].source == "admin"
    html = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Équipe Place des Entreprises" in html and "Merci Claire." in html

    response = admin_client.post(
        "/admin/need/commenter/", data={"id": need.id, "body": "", "csrf_token": csrf_token_from(html)}
    )
    assert response.status_code == 303
    assert "Message non envoyé : Le message est vide" in admin_client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    assert len(thread(need)) == 2


# ---------------------------------------------------------------- notifications


def test_a_burst_makes_one_email_per_recipient_never_to_its_author_nor_to_who_declined(need, admin_user, grouped):
    claire, second, declined = (match.expert for match in need.matches)
    with transaction():
        post_comment(need, body="L'équipe suit ce besoin.", user=admin_user, source="admin")
    for text in ("Premier message", "Deuxième message", "Troisième message https://exemple.fr"):
        with transaction():
            post_comment(need, body=text, expert=claire)
    newest = _db.session.scalars(select(Comment).order_by(Comment.id.desc())).first()

    # The burst is not over yet: nothing is sent.
    assert notify_pending_comments() == 0
    assert _emails() == {}

    assert notify_pending_comments(now=utcnow() + LATER) == 3
    emails = _emails()
    assert set(emails) == {claire.email, second.email, admin_user.email}
    assert declined.email not in emails
    assert emails[second.email].key == f"comments:{need.id}:expert:{second.id}:{newest.id}"
    assert emails[admin_user.email].key == f"comments:{need.id}:user:{admin_user.id}:{newest.id}"

    second_text = emails[second.email].body_text
    for text in ("L'équipe suit ce besoin.", "Premier message", "Deuxième message", "Troisième message"):
        assert text in second_text
    assert "Claire Martin — " in second_text and "Équipe Place des Entreprises" in second_text
    assert "Votre statut sur ce besoin : Prise en charge." in second_text
    assert "4 nouveaux messages" in emails[second.email].subject
    expert_links = re.findall(r"https?://\S+/expert/\S+", second_text)
    assert len(expert_links) == 1
    assert match_for_token(expert_links[0].rsplit("/", 1)[1]).id == need.matches[1].id  # their own link

    # The author gets only what the others wrote; staff get the experts' words, no expert link.
    claire_text = emails[claire.email].body_text
    assert "L'équipe suit ce besoin." in claire_text and "Premier message" not in claire_text
    assert "Votre statut sur ce besoin : En attente." in claire_text
    staff_text = emails[admin_user.email].body_text
    assert "Premier message" in staff_text and "L'équipe suit ce besoin." not in staff_text
    assert "/expert/" not in staff_text and f"/admin/need/details/?id={need.id}" in staff_text
    assert "&lt;" not in claire_text  # the text part is not HTML-escaped

    # Notified once: running again finds nothing.
    assert notify_pending_comments(now=utcnow() + LATER) == 0
    assert len(_emails()) == 3
    assert all(c.notified_at is not None for c in thread(need))


def test_a_comment_nobody_else_needs_to_read_sends_nothing(db, grouped):
    lone = make_need(1)
    with transaction():
        post_comment(lone, body="Note pour moi", expert=lone.matches[0].expert)
    assert notify_pending_comments(now=utcnow() + LATER) == 0
    assert _emails() == {}
    assert thread(lone)[0].notified_at is not None


def test_a_burst_still_going_on_waits_for_its_last_comment(need, grouped, monkeypatch, app):
    monkeypatch.setitem(app.config, "COMMENT_GROUPING_SECONDS", 600)
    with transaction():
        post_comment(need, body="Un", expert=need.matches[0].expert)
    first = _db.session.scalar(select(Comment))
    first.created_at = utcnow() - timedelta(seconds=900)
    _db.session.commit()
    with transaction():
        post_comment(need, body="Deux", expert=need.matches[0].expert)
    assert notify_pending_comments() == 0  # the newest is recent
    assert notify_pending_comments(now=utcnow() + timedelta(seconds=601)) == 1
    [email] = _emails().values()
    assert "Un" in email.body_text and "Deux" in email.body_text


def test_without_a_worker_each_comment_is_notified_at_once(need, admin_user):
    with transaction():
        post_comment(need, body="Bonjour à tous", expert=need.matches[0].expert)
    assert set(_emails()) == {need.matches[1].expert.email}
    with transaction():
        post_comment(need, body="Bonjour", user=admin_user, source="admin")
    _db.session.expire_all()
    recipients = sorted(email.recipient for email in _db.session.scalars(select(OutboundEmail)))
    # Then both experts still involved: the second one a second time, for the new comment.
    assert recipients == sorted([need.matches[1].expert.email] * 2 + [need.matches[0].expert.email])


# ---------------------------------------------------------------- end to end


def _text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def test_a_burst_from_the_page_reaches_the_right_people_once_through_the_worker(
    need, admin_user, grouped, worker_app, smtp_server, run_worker
):
    from app.jobs import notify_comments_job

    claire, second, declined = (match.expert for match in need.matches)
    with transaction():
        post_comment(need, body="L'équipe suit ce besoin.", user=admin_user, source="admin")
    worker_app.config["COMMENT_GROUPING_SECONDS"] = 0
    client = worker_app.test_client()
    url = f"/expert/{expert_token(need.matches[0])}"
    for text in ("Premier message", "Deuxième message", "Troisième message"):
        token = csrf_token_from(client.get(url).get_data(as_text=True))
        assert client.post(f"{url}/commentaires", data={"body": text, "csrf_token": token}).status_code == 303
    # With a worker, posting notifies nobody: the periodic job groups the burst.
    assert _emails() == {}

    with worker_app.app_context():
        notify_comments_job.enqueue()
    worker = run_worker(worker_app)
    assert worker.failed == []

    recipients = sorted(a.addr_spec for message in smtp_server.messages for a in message["To"].addresses)
    assert recipients == sorted([claire.email, second.email, admin_user.email])
    assert declined.email not in recipients
    [to_second] = smtp_server.to(second.email)
    text = _text(to_second)
    assert all(t in text for t in ("Premier message", "Deuxième message", "Troisième message"))
    links = [link for link in re.findall(r"https?://\S+", text) if "/expert/" in link]
    assert len(links) == 1
    assert client.get(links[0].removeprefix(worker_app.config["BASE_URL"])).status_code == 200
    [to_claire] = smtp_server.to(claire.email)
    assert "L'équipe suit ce besoin." in _text(to_claire) and "Premier message" not in _text(to_claire)

    # The job again, and the worker again: nothing new.
    with worker_app.app_context():
        notify_comments_job.enqueue()
    run_worker(worker_app)
    assert len(smtp_server.messages) == 3


def test_expert_emails_link_the_inbox_and_take_replies_when_inbound_email_is_on(
    need, admin_user, grouped, app, monkeypatch
):
    monkeypatch.setitem(app.config, "INBOUND_EMAIL_DOMAIN", "reponses.place.example")
    with transaction():
        post_comment(need, body="L'équipe suit ce besoin.", user=admin_user, source="admin")
    with transaction():
        post_comment(need, body="Bien reçu", expert=need.matches[0].expert)
    notify_pending_comments(now=utcnow() + LATER)
    emails = _emails()
    to_expert = emails[need.matches[1].expert.email]
    assert re.fullmatch(r"reponse\+\S+@reponses\.place\.example", to_expert.reply_to)
    assert "répondre directement à cet email" in to_expert.body_text
    assert f"{app.config['BASE_URL']}/mes-demandes/" in to_expert.body_text
    assert emails[admin_user.email].reply_to is None

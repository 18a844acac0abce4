"""Fuzzing the inbound parser: never a crash, never a comment from an unverified sender.

Each example hands ``receive_email`` random bytes or a real-looking reply that was damaged
(header lines dropped, duplicated or garbled, bytes overwritten) and whose From and reply
address were drawn among the right expert, the need's other expert, strangers and forgeries.
The oracle is independent of the parser's own reasoning: a new comment may appear only when
the From we wrote is the expert of the match whose genuine, recent token we wrote.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.models import Comment
from app.services.messaging.inbound import receive_email
from app.services.messaging.reply_addresses import reply_address
from tests.factories import make_need
from tests.helpers import INBOUND_DOMAIN

FIXTURE = (Path(__file__).parent / "data" / "inbound" / "reply_gmail.eml").read_bytes()
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _split(raw: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (continuation lines kept with their field) and the rest of the message."""
    head, _sep, body = raw.partition(b"\n\n")
    fields: list[bytes] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        else:
            fields.append(line)
    return fields, body


def _comments(db) -> list[Comment]:
    return list(db.session.scalars(select(Comment).order_by(Comment.id)))


def test_random_bytes_never_raise_nor_post(db, domain):
    make_need(1)

    @FUZZ
    @given(raw=st.binary(max_size=3000))
    def run(raw: bytes) -> None:
        message = receive_email(raw)
        assert message.state == "held" and message.reason

    run()
    assert db.session.scalar(select(func.count(Comment.id))) == 0


def test_damaged_replies_post_only_for_the_verified_expert(db, domain):
    need = make_need(2)
    first, second = need.matches
    experts = {first.id: first.expert.email, second.id: second.expert.email}
    now = time.time()
    tokens = [
        # (recipient address, id of the match it genuinely names now, or None)
        (reply_address(first), first.id),
        (reply_address(second), second.id),
        (reply_address(first).upper(), first.id),  # a mail server that uppercases
        (reply_address(first, issued_at=now - 400 * 86400), None),  # expired
        (reply_address(first)[: -len(INBOUND_DOMAIN) - 3] + "aaa@" + INBOUND_DOMAIN, None),  # forged signature
        (f"reponse+1-1-1-aaaaaaaaaaaaaaaa@{INBOUND_DOMAIN}", None),
        ("contact@place-des-entreprises.example", None),
    ]
    senders = [
        # (From header value, the expert address it names, for the oracle)
        (first.expert.email, first.expert.email),
        (second.expert.email, second.expert.email),
        (f"Claire Martin <{first.expert.email.upper()}>", first.expert.email),
        ("usurpateur@pirate.example", "usurpateur@pirate.example"),
        (f'"{first.expert.email}" <usurpateur@pirate.example>', "usurpateur@pirate.example"),
        (f"{first.expert.email}, usurpateur@pirate.example", None),
        ("", None),
        ("<<<>>>", None),
    ]
    ids = [match.id for match in need.matches]
    outcomes: set[str] = set()

    @FUZZ
    @given(
        token_choice=st.sampled_from(tokens),
        sender_choice=st.one_of(st.sampled_from(senders), st.emails().map(lambda address: (address, address))),
        operations=st.lists(
            st.tuples(st.sampled_from(["drop", "duplicate", "garble"]), st.integers(0, 40), st.binary(max_size=12)),
            max_size=4,
        ),
        damage=st.one_of(st.none(), st.tuples(st.integers(0, 3000), st.binary(min_size=1, max_size=40))),
    )
    def run(token_choice, sender_choice, operations, damage) -> None:
        address, match_id = token_choice
        sender, named = sender_choice
        raw = FIXTURE.replace(b"REPLY_ADDRESS", address.encode()).replace(b"EXPERT_ADDRESS", sender.encode())
        raw = raw.replace(b"CAJx7Lk2qPq=8m5cYv1uXh3s1Qn0dLw9bq3Z-fR6", uuid.uuid4().hex.encode())
        fields, body = _split(raw)
        from_intact = True
        for operation, index, junk in operations:
            if not fields:
                break
            index %= len(fields)
            touches_from = fields[index].lower().startswith(b"from:")
            if operation == "drop":
                del fields[index]
                from_intact = from_intact and not touches_from
            elif operation == "duplicate":
                fields.insert(index, fields[index])
            else:
                fields[index] = fields[index][: len(fields[index]) // 2] + junk
                from_intact = from_intact and not touches_from
        raw = b"\n".join(fields) + b"\n\n" + body
        if damage is not None:
            offset, junk = damage
            raw = raw[:offset] + junk + raw[offset + len(junk) :]

        before = {comment.id for comment in _comments(db)}
        message = receive_email(raw)
        new = [comment for comment in _comments(db) if comment.id not in before]

        assert message.state in ("held", "posted")
        assert (message.state == "held") == bool(message.reason)
        assert len(new) <= 1
        if new:
            comment = new[0]
            assert message.state == "posted" and message.comment_id == comment.id
            assert match_id is not None, "posted from a forged, expired or foreign address"
            assert from_intact and named is not None, "posted without a readable From"
            assert named.casefold() == experts[match_id].casefold(), "posted for a sender who is not the expert"
            assert comment.expert_id == db.session.get(type(first), match_id).expert_id
            assert comment.need_id == need.id and comment.source == "email"
        else:
            assert message.state != "posted" or message.comment_id in before  # a redelivery
        assert all(match.id in ids for match in need.matches)
        outcomes.add("comment" if new else message.state)

    run()
    # The oracle was exercised both ways: some replies did land, others were held.
    assert {"comment", "held"} <= outcomes

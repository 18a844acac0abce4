"""Thousands of generated posts to the public form (hypothesis): unicode, control characters,
NUL bytes, very long strings, numbers with spaces, in every field and in the campaign
parameters. The form never answers 500; it answers 303 only when the request it stored is
valid by the very functions that validate the form, and every stored row checks again,
unchanged."""

from __future__ import annotations

import string
import time
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from stdnum import luhn

from app.extensions import db as _db
from app.models import Solicitation
from app.public.forms import sign_served_at
from app.services.requests.validation import FIELDS, clean_solicitation
from tests.helpers import csrf_token_from

FORM = "/demande/recrutement"
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no example database written into the repository
    derandomize=True,  # the same examples on every run, so CI cannot fail by chance
)

VALID = {
    "full_name": "Marie Dupont",
    "email": "marie.dupont@entreprise.fr",
    "phone": "06 12 34 56 78",
    "siret": "12345678200028",
    "postal_code": "69002",
    "insee_code": "",
    "description": "Nous cherchons à recruter deux boulangers en CDI avant l'été.",
}

# ---------------------------------------------------------------- strategies

any_text = st.text(max_size=300)  # every code point but surrogates, controls and NUL included
controls = st.text(alphabet=st.characters(categories=["Cc", "Zs", "Zl", "Zp", "Cf"]), max_size=30)
with_nul = st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=20), st.text(max_size=20))
very_long = st.builds(
    lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(min_value=5_000, max_value=12_000)
)
spaced_digits = st.lists(
    st.tuples(st.text(alphabet=string.digits, min_size=1, max_size=5), st.sampled_from(["", " ", ".", "-", "\u00a0"])),
    max_size=6,
).map(lambda parts: "".join(d + sep for d, sep in parts))
numbers = st.integers(min_value=-(10**20), max_value=10**20).map(str)
nasty = st.one_of(any_text, controls, with_nul, spaced_digits, numbers, st.just(""), very_long)


def _siret(body: str) -> str:
    siren = body[:8] + luhn.calc_check_digit(body[:8])
    return siren + body[8:12] + luhn.calc_check_digit(siren + body[8:12])


valid_sirets = st.text(alphabet=string.digits, min_size=12, max_size=12).map(_siret)
phones = st.one_of(
    st.from_regex(r"0[1-9]( ?[0-9]{2}){4}", fullmatch=True),
    st.from_regex(r"\+33 ?[1-9]( ?[0-9]{2}){4}", fullmatch=True),
    st.from_regex(r"0(590|594|596|262|269)[0-9]{6}", fullmatch=True),
)
postal_codes = st.one_of(
    st.sampled_from(["69002", "01400", "75008", "97110", "20000", "13001", "51300", " 69 002 "]),
    st.from_regex(r"[0-9]{5}", fullmatch=True),
    st.from_regex(r"[0-9 ]{4,7}", fullmatch=True),
)
insee_codes = st.one_of(
    st.just(""),
    st.sampled_from(["69123", "01093", "01412", "75056", "2A004", "97120"]),
    st.from_regex(r"[0-9AB]{5}", fullmatch=True),
)
plausible = {
    "full_name": st.one_of(st.text(min_size=1, max_size=60), st.just("Zoé L'Hôte")),
    "email": st.one_of(st.emails(), st.builds(lambda e: e.upper(), st.emails())),
    "phone": phones,
    "siret": st.one_of(valid_sirets, valid_sirets.map(lambda s: f"{s[:3]} {s[3:6]} {s[6:9]} {s[9:]}"), spaced_digits),
    "postal_code": postal_codes,
    "insee_code": insee_codes,
    "description": st.one_of(
        st.text(min_size=15, max_size=400),
        st.builds(lambda t, n: (t * n)[:n], st.text(min_size=1, max_size=10), st.integers(4_990, 5_010)),
    ),
}
tracking = st.dictionaries(st.sampled_from(["mtm_campaign", "mtm_kwd", "mtm_source"]), nasty, max_size=3)


# ---------------------------------------------------------------- the checks


class Tally:
    """Posts, acceptances and refusals of one test, checked against the table at the end."""

    def __init__(self, app, client) -> None:
        self.app, self.client = app, client
        html = client.get(FORM).get_data(as_text=True)
        self.csrf_token = csrf_token_from(html)
        self.posted = self.accepted = self.refused = 0

    def served_at(self) -> str:
        """A new copy of the form (one request is stored per copy), served a minute ago."""
        with self.app.app_context():
            return sign_served_at("recrutement", now=time.time() - 60)

    def count(self) -> int:
        with self.app.app_context():
            return _db.session.scalar(select(func.count()).select_from(Solicitation))

    def post(self, fields: dict[str, str], params: dict[str, str] | None = None) -> None:
        query = "&".join(f"{k}={quote(v)}" for k, v in (params or {}).items())
        served_at = self.served_at()
        response = self.client.post(
            FORM + ("?" + query if query else ""),
            data={**fields, "csrf_token": self.csrf_token, "served_at": served_at},
        )
        self.posted += 1
        assert response.status_code in (303, 422), response.status_code
        with self.app.app_context():
            expected = clean_solicitation(fields)
            if response.status_code == 303:
                self.accepted += 1
                assert expected.is_valid, expected.errors
                stored = _db.session.scalars(select(Solicitation).order_by(Solicitation.id.desc()).limit(1)).one()
                assert {name: getattr(stored, name) for name in FIELDS} == expected.values
            else:
                self.refused += 1
                assert not expected.is_valid
                assert 'id="erreurs"' in response.get_data(as_text=True)
            # One row more per acceptance, none per refusal.
            assert self.count() == self.accepted

    def every_stored_row_checks_again(self) -> int:
        """Each stored request is valid by the form's rules, and already in normal form."""
        with self.app.app_context():
            rows = _db.session.scalars(select(Solicitation)).all()
            for row in rows:
                values = {name: getattr(row, name) for name in FIELDS}
                again = clean_solicitation(values)
                assert again.is_valid, (row.id, again.errors)
                assert again.values == values
                for name in ("mtm_campaign", "mtm_kwd", "mtm_source"):
                    value = getattr(row, name)
                    assert value is None or (len(value) <= 200 and "\x00" not in value)
            assert len(rows) == self.accepted
            return len(rows)

    def report(self, name: str) -> None:
        stored = self.every_stored_row_checks_again()
        print(
            f"\n{name}: {self.posted} posts, {self.accepted} accepted (303), {self.refused} refused (422), {stored} stored"
        )


@pytest.fixture
def tally(app, client):
    return Tally(app, client)


# ---------------------------------------------------------------- the fuzz


def test_garbage_in_every_field(tally):
    @settings(FUZZ, max_examples=700)
    @given(fields=st.fixed_dictionaries(dict.fromkeys(FIELDS, nasty)), params=tracking)
    def run(fields, params):
        tally.post(fields, params)

    run()
    tally.report("garbage in every field")
    assert tally.posted >= 700


def test_one_field_at_a_time_on_a_valid_request(tally):
    @settings(FUZZ, max_examples=1000)
    @given(
        name=st.sampled_from(FIELDS),
        value=st.one_of(nasty, st.sampled_from(list(plausible.values())).flatmap(lambda s: s)),
        params=tracking,
    )
    def run(name, value, params):
        tally.post({**VALID, name: value}, params)

    run()
    tally.report("one field at a time")
    assert tally.accepted > 0 and tally.refused > 0


def test_plausible_requests(tally):
    @settings(FUZZ, max_examples=500)
    @given(fields=st.fixed_dictionaries(plausible), params=tracking)
    def run(fields, params):
        tally.post(fields, params)

    run()
    tally.report("plausible requests")
    assert tally.accepted > 0


def test_bytes_that_are_not_utf8_get_an_answer_not_a_crash(tally):
    """A browser cannot send lone surrogates, but a raw client can send any bytes."""
    from urllib.parse import quote_from_bytes

    body = "&".join(
        [
            f"csrf_token={tally.csrf_token}",
            f"served_at={tally.served_at()}",
            "full_name=" + quote_from_bytes(b"\xed\xa0\x80\xff\xfe Marie"),
            "email=" + quote_from_bytes(b"marie\xc3@exemple.fr"),
            "phone=0612345678",
            "siret=" + quote_from_bytes(b"\x80" * 14),
            "postal_code=69002",
            "description=" + quote_from_bytes(b"\xf0\x28\x8c\x28" * 20),
        ]
    )
    response = tally.client.post("/demande/recrutement", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 422
    assert tally.count() == 0

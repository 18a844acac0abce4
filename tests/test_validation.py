"""The public form's rules, one field at a time: what is accepted, its normal form, and the
French message of each refusal. Normal forms are fixed points (checked again, unchanged)."""

from __future__ import annotations

import pytest
from stdnum.fr import siret as stdnum_siret

from app.services.requests.validation import (
    InvalidValue,
    clean_description,
    clean_email,
    clean_full_name,
    clean_phone,
    clean_postal_code,
    clean_siret,
    clean_solicitation,
    clean_tracking,
)

# ---------------------------------------------------------------- SIRET


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("12345678200028", "12345678200028"),
        ("123 456 782 00028", "12345678200028"),
        (" 123.456.782-00028 ", "12345678200028"),
        ("123\u00a0456\u00a0782\u00a000028", "12345678200028"),  # no-break spaces pasted from a PDF
        # La Poste: SIREN 356 000 000, établissements follow a digit-sum rule, not Luhn.
        ("35600000049837", "35600000049837"),
        ("356 000 000 00048", "35600000000048"),  # its head office, the one Luhn exception
    ],
)
def test_valid_sirets_are_stored_as_14_digits(typed, stored):
    assert clean_siret(typed) == stored
    assert clean_siret(stored) == stored


def test_la_poste_sirets_follow_their_own_rule():
    # Luhn fails on this La Poste établissement, yet it is valid (digit sum multiple of 5)…
    assert sum(int(d) for d in "35600000049837") % 5 == 0
    assert stdnum_siret.is_valid("35600000049837")
    assert clean_siret("35600000049837") == "35600000049837"
    # …and a La Poste number whose digit sum is not a multiple of 5 is refused.
    with pytest.raises(InvalidValue, match="n'est pas valide"):
        clean_siret("35600000049838")


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Indiquez le numéro SIRET de votre entreprise (14 chiffres)."),
        ("   ", "Indiquez le numéro SIRET de votre entreprise (14 chiffres)."),
        ("123456782", "Le numéro SIRET doit comporter 14 chiffres."),
        ("123456782000281", "Le numéro SIRET doit comporter 14 chiffres."),
        ("1234567820002O", "Le numéro SIRET doit comporter 14 chiffres."),  # letter O
        ("١٢٣٤٥٦٧٨٢٠٠٠٢٨", "Le numéro SIRET doit comporter 14 chiffres."),  # Arabic-Indic digits
        ("12345678200029", "Ce numéro SIRET n'est pas valide : vérifiez les 14 chiffres."),
        ("00000000000001", "Ce numéro SIRET n'est pas valide : vérifiez les 14 chiffres."),
    ],
)
def test_invalid_sirets_are_refused_in_french(typed, message):
    with pytest.raises(InvalidValue) as refused:
        clean_siret(typed)
    assert str(refused.value) == message


# ---------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("0612345678", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033 6 12 34 56 78", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("01 23 45 67 89", "+33123456789"),
        ("09 70 12 34 56", "+33970123456"),  # VoIP lines are common for small businesses
        ("0590 12 34 56", "+590590123456"),  # Guadeloupe, dialled nationally
        ("0262 12 34 56", "+262262123456"),  # La Réunion
        ("+687 28 12 34", "+687281234"),  # Nouvelle-Calédonie
    ],
)
def test_french_phones_are_stored_in_e164(typed, stored):
    assert clean_phone(typed) == stored
    assert clean_phone(stored) == stored


@pytest.mark.parametrize(
    "typed",
    ["06 12", "12345678901234567890", "+44 20 7946 0958", "+1 202 555 0143", "téléphone", "06\x0012345678", "+"],
)
def test_other_phones_are_refused(typed):
    with pytest.raises(InvalidValue, match="numéro de téléphone français valide"):
        clean_phone(typed)


def test_a_missing_phone_says_why_it_is_needed():
    with pytest.raises(InvalidValue, match="pour que le conseiller vous rappelle"):
        clean_phone("  ")


# ---------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Marie.Dupont@Entreprise.FR", "marie.dupont@entreprise.fr"),
        ("  contact+pde@boulangerie-lyon.fr ", "contact+pde@boulangerie-lyon.fr"),
        ("marie@boulangerie-héritage.fr", "marie@xn--boulangerie-hritage-nzb.fr"),  # punycode, deliverable anywhere
    ],
)
def test_emails_are_stored_lowercased_in_ascii(typed, stored):
    assert clean_email(typed) == stored
    assert clean_email(stored) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "marie",
        "marie@",
        "@entreprise.fr",
        "marie dupont@entreprise.fr",
        "marie@entreprise",
        "josé@entreprise.fr",
        "a\x00@b.fr",
    ],
)
def test_malformed_emails_are_refused(typed):
    with pytest.raises(InvalidValue, match="adresse email valide"):
        clean_email(typed)


def test_deliverability_is_only_checked_when_asked(monkeypatch):
    import email_validator

    def undeliverable(email, **options):
        assert options["check_deliverability"] is True
        raise email_validator.EmailUndeliverableError("The domain name does not accept email.")

    monkeypatch.setattr("app.services.requests.validation.validate_email", undeliverable)
    with pytest.raises(InvalidValue, match="ne reçoit pas d'emails"):
        clean_email("marie@domaine-sans-mx.fr", check_deliverability=True)


# ---------------------------------------------------------------- texts


def test_names_are_trimmed_and_spaces_collapsed():
    assert clean_full_name("  Marie \t  Dupont-Leroy ") == "Marie Dupont-Leroy"
    assert clean_full_name("Zoé L'Hôte") == "Zoé L'Hôte"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Indiquez votre prénom et votre nom."),
        ("1234", "Indiquez votre prénom et votre nom en lettres."),
        ("Marie\x07Dupont", "Le nom contient des caractères non autorisés."),
        ("M" * 201, "Le nom ne doit pas dépasser 200 caractères."),
    ],
)
def test_names_refused(typed, message):
    with pytest.raises(InvalidValue) as refused:
        clean_full_name(typed)
    assert str(refused.value) == message


def test_descriptions_keep_their_lines_and_lose_their_margins():
    typed = "\r\n  Bonjour,\r\nnous cherchons un financement\tpour une machine.  \r\n"
    assert clean_description(typed) == "Bonjour,\nnous cherchons un financement\tpour une machine."
    assert clean_description("a" * 5000) == "a" * 5000


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("", "Décrivez votre besoin."),
        ("   Trop court.          ", "20 caractères au moins"),
        ("a" * 5001, "ne doit pas dépasser 5\u202f000 caractères"),
        ("Une description avec un \x00 dedans, assez longue.", "caractères non autorisés"),
    ],
)
def test_descriptions_refused(typed, fragment):
    with pytest.raises(InvalidValue, match=fragment):
        clean_description(typed)


def test_postal_codes_are_five_digits():
    assert clean_postal_code(" 69 002 ") == "69002"
    for typed in ("6900", "690021", "69OO2", "６９００２"):
        with pytest.raises(InvalidValue, match="5 chiffres"):
            clean_postal_code(typed)


def test_campaign_parameters_are_cut_never_refused():
    assert clean_tracking(None) is None
    assert clean_tracking("  ") is None
    assert clean_tracking("salon\x00-2026") == "salon-2026"
    assert clean_tracking("x" * 500) == "x" * 200


# ---------------------------------------------------------------- the whole form, with the territories


VALID = {
    "full_name": "Marie Dupont",
    "email": "marie@entreprise.fr",
    "phone": "0612345678",
    "siret": "12345678200028",
    "postal_code": "69002",
    "insee_code": "",
    "description": "Nous voulons recruter deux boulangers avant l'été.",
}


def test_a_whole_request_is_cleaned_and_its_commune_deduced(db):
    result = clean_solicitation(VALID)
    assert result.is_valid
    assert result.values["insee_code"] == "69123"
    assert result.values["phone"] == "+33612345678"
    # A stored request checks again unchanged: the normal form is a fixed point.
    again = clean_solicitation(result.values)
    assert again.is_valid and again.values == result.values


def test_several_communes_ask_for_a_choice(db):
    result = clean_solicitation({**VALID, "postal_code": "01400"})
    assert result.errors == {"insee_code": "Ce code postal couvre plusieurs communes : choisissez la vôtre."}
    assert result.needs_commune_choice
    assert {"01093", "01412"} <= {c.code for c in result.communes}
    chosen = clean_solicitation({**VALID, "postal_code": "01400", "insee_code": "01093"})
    assert chosen.is_valid and chosen.values["insee_code"] == "01093"


def test_a_commune_outside_the_postal_code_is_refused(db):
    result = clean_solicitation({**VALID, "insee_code": "01093"})
    assert result.errors == {
        "insee_code": "Cette commune ne correspond pas au code postal : choisissez-la dans la liste."
    }


def test_an_unknown_postal_code_is_refused_and_asks_no_commune(db):
    result = clean_solicitation({**VALID, "postal_code": "00000", "insee_code": "69123"})
    assert result.errors == {"postal_code": "Ce code postal n'existe pas : vérifiez-le."}
    assert result.communes == [] and "insee_code" not in result.values


def test_every_error_at_once(db):
    result = clean_solicitation({})
    assert set(result.errors) == {"full_name", "email", "phone", "siret", "postal_code", "description"}


@pytest.mark.parametrize(
    ("stored", "shown"),
    [("+33612345678", "06 12 34 56 78"), ("+590590123456", "+590 590 12 34 56"), ("", ""), ("illisible", "illisible")],
)
def test_phones_are_shown_as_french_people_read_them(stored, shown):
    from app.services.requests.validation import display_phone

    assert display_phone(stored) == shown

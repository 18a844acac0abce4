"""Flask CLI: thin click wrappers over the service verbs. Every command is idempotent (run it
twice, the second run changes nothing), and their names and options are what operators script."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.dates import PARIS
from app.extensions import db
from app.models import ApiKey, Institution
from app.models.base import INTEGER_MAX
from app.models.outbox import FailureCause
from app.services.accounts.users import create_user
from app.services.addressbook.filters import import_filters
from app.services.addressbook.importer import import_addressbook
from app.services.addressbook.routing import explain
from app.services.addressbook.routing_filters import company_for_explain
from app.services.audit import acting_as
from app.services.errors import ServiceError
from app.services.messaging.inbound import MAX_MESSAGE_BYTES, outcome_text, receive_email
from app.services.messaging.outbox import resend_failed, sweep_outbox
from app.services.partners.apikeys import DEFAULT_VALID_DAYS, create_key, revoke
from app.services.reference.catalog import load_catalog
from app.services.reference.geo import load_territories
from app.services.requests.followup import run_followup
from app.services.requests.search import reindex_all
from app.services.seed import seed_demo
from app.services.statistics.aggregates import refresh as refresh_statistics
from app.services.statistics.reports import build_reports
from app.services.transactions import transaction


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


geo_cli = AppGroup("geo", help="Territoires français (régions, départements, EPCI, communes).")
catalog_cli = AppGroup("catalog", help="Catalogue des thèmes et sujets.")
addressbook_cli = AppGroup("addressbook", help="Annuaire des partenaires.")
users_cli = AppGroup("users", help="Comptes de l'espace de gestion.")
routing_cli = AppGroup("routing", help="Règle d'aiguillage des demandes.")
seed_cli = AppGroup("seed", help="Données de démonstration.")
inbound_cli = AppGroup("inbound", help="Réponses des experts par courriel.")
desk_cli = AppGroup("desk", help="Suivi des demandes (recherche, listes).")
outbox_cli = AppGroup("outbox", help="Boîte d'envoi des courriels.")
followup_cli = AppGroup("followup", help="Suivi des demandes : relances, échecs, satisfaction.")
stats_cli = AppGroup("stats", help="Statistiques publiques (/stats).")
reports_cli = AppGroup("reports", help="Rapports d'activité des partenaires.")
apikeys_cli = AppGroup("apikeys", help="Clés de l'API des partenaires.")


@geo_cli.command("load")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Dossier data/ de @etalab/decoupage-administratif.")
def geo_load(data_dir: str | None) -> None:
    """Charge ou met à jour les territoires depuis @etalab/decoupage-administratif."""
    try:
        with transaction():
            report = load_territories(data_dir or current_app.config["GEO_DATA_DIR"])
    except ServiceError as error:
        _fail(str(error))
    for line in report.lines():
        click.echo(line)


@catalog_cli.command("load")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def catalog_load(path: str | None) -> None:
    """Charge le catalogue (par défaut : celui du projet)."""
    with acting_as("cli"):
        try:
            with transaction():
                report = load_catalog(path or current_app.config["CATALOG_DEFAULT_PATH"])
        except ServiceError as error:
            _fail(str(error))
    for line in report.lines():
        click.echo(line)


def _import_file(path: str, dry_run: bool, verb) -> None:
    """Read ``path``, run the import ``verb`` in one transaction as « import <file> », print its
    report; exit 1 listing every error (nothing written), say so on a dry run."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        _fail(f"Impossible de lire {path} : {error.strerror}.")
    with acting_as(f"import {Path(path).name}"), transaction():
        report = verb(raw, dry_run=dry_run)
    for line in report.lines():
        click.echo(line)
    if report.errors:
        click.echo(f"{len(report.errors)} erreur(s) : rien n'a été importé.", err=True)
        for error in report.errors:
            click.echo(str(error), err=True)
        sys.exit(1)
    if dry_run:
        click.echo("Simulation (--dry-run) : rien n'a été enregistré.")


@addressbook_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Vérifie et résume sans rien enregistrer.")
def addressbook_import(path: str, dry_run: bool) -> None:
    """Importe un annuaire CSV : tout ou rien, chaque erreur avec son numéro de ligne."""
    _import_file(path, dry_run, import_addressbook)


@addressbook_cli.command("filters")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Vérifie et résume sans rien enregistrer.")
def addressbook_filters(path: str, dry_run: bool) -> None:
    """Importe les filtres de mise en relation (CSV) : tout ou rien, erreurs par ligne.

    Le fichier est l'ensemble des filtres de chaque institution, antenne ou expert qu'il nomme :
    leurs filtres absents du fichier sont supprimés, les autres ne sont pas touchés."""
    _import_file(path, dry_run, import_filters)


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "referent"]), required=True)
@click.option("--institution", "institution_slug", help="Slug de l'institution (référents).")
@click.option("--antenne", "antenne_id", type=int, help="Identifiant de l'antenne (référents).")
@click.option("--password", help="Mot de passe ; demandé s'il n'est pas donné.")
@click.option("--name", "full_name", help="Nom affiché.")
def users_create(email, role, institution_slug, antenne_id, password, full_name) -> None:
    """Crée un compte de l'équipe support ou un référent partenaire."""
    if password is None:
        password = click.prompt("Mot de passe", hide_input=True, confirmation_prompt=True)
    with acting_as("cli"):
        try:
            with transaction():
                user = create_user(
                    email,
                    role=role,
                    password=password,
                    full_name=full_name,
                    institution_slug=institution_slug,
                    antenne_id=antenne_id,
                )
        except ServiceError as error:
            _fail(str(error))
    click.echo(f"Compte créé : {user.email} ({user.role}).")


@routing_cli.command("explain")
@click.argument("subject_slug")
@click.argument("insee_code")
@click.option("--siret", help="SIRET : les faits que le registre donne de l'entreprise.")
@click.option("--naf", help="Code NAF/APE (47.11Z) ; remplace celui du registre.")
@click.option("--headcount-code", help="Tranche d'effectif INSEE (00, 01, 02, 03, 11, 12…, NN inconnue).")
@click.option("--created", help="Date de création AAAA-MM-JJ.")
@click.option("--legal-form", help="Catégorie juridique (4 chiffres, 5499).")
@click.option("--activity", help="Nature d'activité (artisanale, commerciale, libérale…).")
@click.option("--answer", "answers", multiple=True, help="Réponse à une question du sujet : CLE=Réponse (répétable).")
@click.option("--show-excluded", is_flag=True, help="Montre aussi les experts exclus, et par quel filtre.")
@click.option("--json", "as_json", is_flag=True, help="Sortie JSON.")
def routing_explain(
    subject_slug, insee_code, siret, naf, headcount_code, created, legal_form, activity, answers, show_excluded, as_json
) -> None:
    """Les experts qui recevraient un besoin sur ce sujet dans cette commune, et pourquoi."""
    try:
        company = company_for_explain(
            insee_code,
            siret=siret,
            naf=naf,
            headcount_code=headcount_code,
            created=created,
            legal_form=legal_form,
            activity=activity,
        )
        result = explain(subject_slug, insee_code, company, _answers(answers))
    except ServiceError as error:
        _fail(str(error))
    if as_json:
        listed = [m.as_dict() for m in result.matches]
        if show_excluded:
            listed += [{**m.as_dict(), "excluded": True} for m in result.excluded]
        click.echo(json.dumps(listed, ensure_ascii=False, indent=2))
        return
    for line in result.lines(show_excluded=show_excluded):
        click.echo(line)


def _answers(pairs: tuple[str, ...]) -> dict[str, str] | None:
    if not pairs:
        return None
    answers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ServiceError(f"Réponse illisible : « {pair} » (attendu : CLE=Réponse).")
        answers[key.strip()] = value.strip()
    return answers


@seed_cli.command("demo")
def seed_demo_command() -> None:
    """Annuaire et demandes de démonstration (pour make run)."""
    with acting_as("seed"), transaction():
        report = seed_demo()
    for line in report.lines():
        click.echo(line)


# sysexits.h EX_TEMPFAIL: Postfix, Exim and the like keep the message and try again later.
EX_TEMPFAIL = 75


@inbound_cli.command("deliver")
@click.argument("source", type=click.File("rb"), default="-")
def inbound_deliver(source) -> None:
    """Reçoit une réponse par courriel (RFC 5322 brut, entrée standard par défaut), pour un « pipe » de MTA.

    Code de sortie 0 dès que le message est enregistré, publié comme commentaire ou retenu pour
    l'équipe (la raison est affichée) : un refus n'a pas à revenir en erreur chez l'expert.
    Code 75 (EX_TEMPFAIL) seulement sur une panne de notre côté : le serveur de messagerie
    garde alors le message et le représente plus tard.
    """
    try:
        raw = source.read(MAX_MESSAGE_BYTES + 1)
        with acting_as("courriel entrant"), transaction():
            message = receive_email(raw)
        click.echo(outcome_text(message))
    except Exception as error:
        current_app.logger.exception("réponse par courriel non enregistrée")
        click.echo(f"Erreur interne, message non enregistré ({type(error).__name__}) : nouvel essai attendu.", err=True)
        sys.exit(EX_TEMPFAIL)


@desk_cli.command("reindex")
def desk_reindex() -> None:
    """Recalcule les textes de recherche des besoins et des sollicitations (par lots, reprend sans risque)."""
    changed = reindex_all(progress=lambda table, done, total: click.echo(f"{table} : {done}/{total}"))
    click.echo(f"{changed['needs']} besoin(s) et {changed['solicitations']} sollicitation(s) réindexé(s).")


@outbox_cli.command("sweep")
def outbox_sweep() -> None:
    """Remet en file d'envoi les courriels en attente (après une panne de Redis ou du serveur SMTP)."""
    count = sweep_outbox()
    click.echo(f"{count} courriel(s) remis en file d'envoi.")


@outbox_cli.command("resend")
@click.option(
    "--cause",
    type=click.Choice([cause.value for cause in FailureCause]),
    help="Seulement les échecs de cette cause (message : refusés pour un défaut du service).",
)
@click.option("--dry-run", is_flag=True, help="Compter sans rien renvoyer.")
def outbox_resend(cause: str | None, dry_run: bool) -> None:
    """Renvoie les courriels en échec définitif, par exemple après la correction d'un défaut du service."""
    with transaction():
        count = resend_failed(cause=FailureCause(cause) if cause else None, dry_run=dry_run)
    if dry_run:
        click.echo(f"{count} courriel(s) en échec seraient renvoyés.")
        return
    click.echo(f"{count} courriel(s) remis en file d'envoi.")


def _moment(text: str | None) -> datetime | None:
    """``--now``: ISO 8601, with its offset, or else read as Paris time (as operators speak)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--now : date invalide « {text} » (attendu : ISO 8601, par exemple 2026-12-03T06:00 ou 2026-12-03).")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PARIS)
    return moment.astimezone(UTC)


@stats_cli.command("refresh")
def stats_refresh() -> None:
    """Recalcule les agrégats mensuels de /stats (comme le fait chaque nuit flask rq cron)."""
    with acting_as("cli"), transaction():
        report = refresh_statistics()
    for line in report.lines():
        click.echo(line)


@reports_cli.command("build")
@click.option("--quarter", help="Trimestre AAAA-Qn, par exemple 2026-Q3.")
@click.option("--month", help="Mois AAAA-MM (le fichier mensuel des mises en relation), par exemple 2026-11.")
@click.option("--institution", "institution_slug", help="Identifiant d'une institution (sinon : toutes).")
def reports_build(quarter: str | None, month: str | None, institution_slug: str | None) -> None:
    """Construit (ou reconstruit) les rapports d'un trimestre ou d'un mois et prévient les référents (une fois)."""
    if bool(quarter) == bool(month):
        _fail("Indiquez soit --quarter AAAA-Qn, soit --month AAAA-MM.")
    try:
        with acting_as("cli"), transaction():
            result = build_reports(quarter or month, institution_slug)
    except ServiceError as error:
        _fail(str(error))
    for line in result.lines():
        click.echo(line)


@followup_cli.command("run")
@click.option("--now", "now_text", metavar="ISO-8601", help="Le moment à considérer (par défaut : maintenant).")
@click.option("--dry-run", is_flag=True, help="Afficher ce qui serait envoyé, sans rien envoyer.")
def followup_run(now_text: str | None, dry_run: bool) -> None:
    """Envoie chaque étape du suivi due à ce moment ; une étape déjà faite ne l'est pas deux fois."""
    with transaction():
        done = run_followup(_moment(now_text), dry_run=dry_run)
    verb = "serait envoyé" if dry_run else "envoyé"
    for item in done:
        click.echo(f"{verb} : {item.line()}")
    click.echo(f"{len(done)} courriel(s) de suivi {'à envoyer' if dry_run else 'envoyé(s)'}.")


@apikeys_cli.command("create")
@click.argument("institution_slug")
@click.option("--valid-days", type=int, default=DEFAULT_VALID_DAYS, show_default=True, help="Durée de validité.")
@click.option("--label", default="", help="À quoi sert la clé (par exemple : « site régional »).")
def apikeys_create(institution_slug: str, valid_days: int, label: str) -> None:
    """Crée une clé d'API pour une institution et l'affiche une seule fois (seule son empreinte est gardée)."""
    institution = db.session.scalar(
        select(Institution).where(Institution.slug == institution_slug, Institution.deleted_at.is_(None))
    )
    if institution is None:
        _fail(f"Institution inconnue : « {institution_slug} ».")
    try:
        with acting_as("cli"), transaction():
            made = create_key(institution, valid_days=valid_days, label=label)
            key_id, until = made.key.id, made.key.valid_until
    except ServiceError as error:
        _fail(str(error))
    click.echo(f"Clé n° {key_id} pour {institution.name}, valable jusqu'au {until.astimezone(PARIS):%d/%m/%Y %H:%M}.")
    click.echo("Copiez-la maintenant : elle ne sera plus jamais affichée.")
    click.echo(made.secret)


@apikeys_cli.command("revoke")
@click.argument("key_id", type=int)
def apikeys_revoke(key_id: int) -> None:
    """Révoque une clé d'API : les appels qui la portent sont refusés dès maintenant."""
    key = db.session.get(ApiKey, key_id) if 0 < key_id <= INTEGER_MAX else None
    if key is None:
        _fail(f"Aucune clé d'API n° {key_id}.")
    with acting_as("cli"), transaction():
        changed = revoke(key)
    click.echo(f"Clé n° {key_id} révoquée." if changed else f"La clé n° {key_id} était déjà révoquée.")


def init_app(app: Flask) -> None:
    groups = (
        geo_cli,
        catalog_cli,
        addressbook_cli,
        users_cli,
        routing_cli,
        seed_cli,
        inbound_cli,
        desk_cli,
        outbox_cli,
        followup_cli,
        stats_cli,
        reports_cli,
        apikeys_cli,
    )
    for group in groups:
        app.cli.add_command(group)

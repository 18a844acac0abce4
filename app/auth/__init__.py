"""Accounts' pages: login and logout, forgotten password, invitation and reset links, « Mon compte ».

Also the session rules (Flask-Login, no remember-me): a session ends after
``SESSION_IDLE_MINUTES`` without a request, ``PERMANENT_SESSION_LIFETIME`` after login, and as
soon as the account's password (or address) changes elsewhere: the session keeps a fingerprint
of the password hash and the user loader refuses a session whose fingerprint is stale. Every
session is also a row on the server (``services/accounts/sessions.py``): the cookie carries its
token, and a request is logged in only while the row is open, so logging out, closing a session
from « Mon compte » or staff deactivating the account ends it even for a copied cookie.

The pages never say whether an address has an account: a wrong password and an unknown address
get the same answer, and an origin that failed too often on an address reads « Trop de
tentatives » whether the address has an account or not (``users.authenticate``: the lock is per
address *and* origin, so nobody can lock the owner out from elsewhere).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from app.extensions import db, limiter
from app.models import User
from app.services import audit
from app.services.accounts import accounts, passwords, sessions
from app.services.accounts.users import authenticate, login_delay, origin_locked
from app.services.errors import ServiceError
from app.services.transactions import transaction

bp = Blueprint("auth", __name__)

TOO_MANY_ATTEMPTS = "Trop de tentatives : réessayez dans quelques minutes."
WRONG_CREDENTIALS = "Adresse email ou mot de passe incorrect."
RESET_REQUESTED = "Si un compte existe pour cette adresse, un email vient de lui être envoyé."
# Session keys (Flask-Login's own start with an underscore too).
FINGERPRINT, LOGIN_AT, SEEN_AT, SERVER_SESSION = "_pde_fp", "_pde_login_at", "_pde_seen", "_pde_sid"
RESET_ADDRESS_SCOPE = "reset-address"


# ---------------------------------------------------------------- forms

_EMAIL_VALIDATORS = [DataRequired("Indiquez votre adresse email."), Email("Adresse email invalide.")]


class LoginForm(FlaskForm):
    email = EmailField("Adresse email", validators=_EMAIL_VALIDATORS)
    password = PasswordField(
        "Mot de passe",
        validators=[
            DataRequired("Indiquez votre mot de passe."),
            Length(max=1000, message="Mot de passe trop long."),
        ],
    )


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Adresse email", validators=_EMAIL_VALIDATORS)


def _new_password_field() -> PasswordField:
    return PasswordField(
        "Nouveau mot de passe",
        validators=[DataRequired("Choisissez un mot de passe.")],
        description=f"Au moins {passwords.MIN_PASSWORD_LENGTH} caractères. Quelques mots sans rapport entre eux "
        "font un mot de passe solide et facile à retenir.",
    )


def _confirmation_field() -> PasswordField:
    return PasswordField(
        "Confirmation du mot de passe",
        validators=[
            DataRequired("Saisissez le mot de passe une seconde fois."),
            EqualTo("password", "Les deux mots de passe ne sont pas identiques."),
        ],
    )


class ChoosePasswordForm(FlaskForm):
    password = _new_password_field()
    confirmation = _confirmation_field()


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Mot de passe actuel", validators=[DataRequired("Indiquez votre mot de passe actuel.")]
    )
    password = _new_password_field()
    confirmation = _confirmation_field()


# ---------------------------------------------------------------- rate limits


def _submitted_address(prefix: str) -> str:
    address = (request.form.get("email") or "").strip().lower()[:254]
    return f"{prefix}:{address}" if address else f"{prefix}-ip:{get_remote_address()}"


def _too_many_login_attempts(_limit):
    form = LoginForm(formdata=None, email=request.form.get("email", "")[:254])
    return render_template("auth/login.html", form=form, alert=TOO_MANY_ATTEMPTS), 429


@bp.errorhandler(429)
def too_many_requests(error):
    """A limit of these pages: the login page answers with its own form (``on_breach``);
    the others with a short French page."""
    if getattr(error, "response", None) is not None:
        return error.response
    return render_template("auth/message.html", title="Trop de tentatives", message=TOO_MANY_ATTEMPTS), 429


@bp.after_request
def _private(response):
    """Account pages carry tokens and personal data: no caching, no token leaking as a referrer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# ---------------------------------------------------------------- sessions


def _clear_session() -> None:
    session.clear()
    # Flask-WTF caches the request's CSRF token in ``g``; it belonged to the cleared session.
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def _start_session(user: User) -> None:
    """A fresh session for ``user``: nothing carried over from before login (fixation)."""
    _clear_session()
    login_user(user, remember=False)
    now = int(time.time())
    session[FINGERPRINT] = accounts.session_fingerprint(user)
    session[LOGIN_AT] = now
    session[SEEN_AT] = now
    with transaction():
        session[SERVER_SESSION] = sessions.open_session(
            user, ip_address=get_remote_address(), user_agent=request.user_agent.string
        )


def _session_expired(now: float) -> bool:
    idle = int(current_app.config.get("SESSION_IDLE_MINUTES", 60)) * 60
    lifetime = current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds()
    seen, started = session.get(SEEN_AT), session.get(LOGIN_AT)
    if not isinstance(seen, int) or not isinstance(started, int):
        return True
    return now - seen > idle or now - started > lifetime


@bp.before_app_request
def _expire_sessions() -> None:
    # What Flask-Login and Flask-WTF cache in ``g`` belongs to one request's session; an app
    # context kept across requests (tests, scripts) must not hand it to the next one.
    g.pop("_login_user", None)
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    if "_user_id" not in session or (request.endpoint or "").endswith("static"):
        return  # assets (ours and Flask-Admin's) need no session check
    now = time.time()
    token = session.get(SERVER_SESSION)
    if _session_expired(now):
        with transaction():
            sessions.end_by_token(token, "expired")
        _clear_session()
        flash("Votre session a expiré : reconnectez-vous.", "info")
        return
    user_id = str(session.get("_user_id", ""))
    row = sessions.open_row(token, int(user_id)) if user_id.isdigit() else None
    if row is None:
        _clear_session()
        flash("Votre session a été fermée : reconnectez-vous.", "info")
        return
    if sessions.needs_touch(row):
        with transaction():
            sessions.touch(row)
    # Written back at most once a minute, not on every request.
    if now - session[SEEN_AT] >= 60:
        session[SEEN_AT] = int(now)


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths, so the login page cannot be used as an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("admin.index")


# ---------------------------------------------------------------- login, logout


@bp.route("/connexion", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"], on_breach=_too_many_login_attempts)
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        origin = get_remote_address() or "inconnue"
        # Committed whatever the answer: a failed attempt counts towards this origin's lock.
        with transaction():
            user = authenticate(form.email.data, form.password.data, origin=origin)
        if user is not None:
            _start_session(user)
            return redirect(_safe_next(request.args.get("next")))
        # Failures from every origin slow the address down; they lock only the origin they came from.
        time.sleep(login_delay(form.email.data))
        if origin_locked(form.email.data, origin):
            return _too_many_login_attempts(None)
        form.password.errors.append(WRONG_CREDENTIALS)
        status = 422
    elif request.method == "POST":
        status = 422
    return render_template("auth/login.html", form=form), status


@bp.route("/deconnexion", methods=["POST"])
def logout():
    with transaction():
        sessions.end_by_token(session.get(SERVER_SESSION), "logout")
    logout_user()
    _clear_session()
    flash("Vous êtes déconnecté.", "info")
    return redirect(url_for("auth.login"))


# ---------------------------------------------------------------- forgotten password


@bp.route("/mot-de-passe-oublie", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["PASSWORD_RESET_RATE_LIMIT"], methods=["POST"])
@limiter.shared_limit(
    lambda: current_app.config["PASSWORD_RESET_PER_EMAIL_LIMIT"],
    scope=RESET_ADDRESS_SCOPE,
    key_func=lambda: _submitted_address("reset"),
    methods=["POST"],
)
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        with transaction():
            accounts.request_password_reset(form.email.data)
        return render_template("auth/message.html", title="Mot de passe oublié", message=RESET_REQUESTED)
    status = 422 if request.method == "POST" else 200
    return render_template("auth/forgot_password.html", form=form), status


# ---------------------------------------------------------------- invitation and reset links


def _link_error(error: accounts.AccountLinkError):
    return (
        render_template("auth/message.html", title=error.title, message=str(error), link_error=True),
        error.http_status,
    )


def _choose_password(token: str, *, invitation: bool):
    find = accounts.user_for_invitation if invitation else accounts.user_for_reset
    apply = accounts.accept_invitation if invitation else accounts.reset_password
    try:
        user = find(token)
    except accounts.AccountLinkError as error:
        return _link_error(error)
    form = ChoosePasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            with transaction():
                user = apply(token, form.password.data)
        except accounts.AccountLinkError as error:
            return _link_error(error)
        except passwords.PasswordRejected as error:
            form.password.errors.append(str(error))
        else:
            _start_session(user)
            flash(
                "Bienvenue : votre compte est activé." if invitation else "Votre nouveau mot de passe est enregistré.",
                "success",
            )
            return redirect(url_for("admin.index"))
        status = 422
    elif request.method == "POST":
        status = 422
    return render_template(
        "auth/choose_password.html",
        form=form,
        invitation=invitation,
        email=user.email,
        role_scope=accounts.role_and_scope(user),
    ), status


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@limiter.limit("20 per minute")
def accept_invitation(token: str):
    return _choose_password(token, invitation=True)


@bp.route("/mot-de-passe/<token>", methods=["GET", "POST"])
@limiter.limit("20 per minute")
def reset_password(token: str):
    return _choose_password(token, invitation=False)


# ---------------------------------------------------------------- « Mon compte »


@bp.route("/mon-compte", methods=["GET", "POST"])
@login_required
@limiter.limit("10 per minute", methods=["POST"])
def account():
    """Every logged-in person sees their own role and scope, and changes their password."""
    form = ChangePasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            with transaction():
                accounts.change_password(current_user, form.current_password.data, form.password.data)
                sessions.end_all(current_user, "password", keep_token=session.get(SERVER_SESSION))
        except passwords.PasswordRejected as error:
            field = form.current_password if isinstance(error, passwords.WrongCurrentPassword) else form.password
            field.errors.append(str(error))
        else:
            # This session stays; every other one ends with the old fingerprint.
            session[FINGERPRINT] = accounts.session_fingerprint(current_user)
            flash("Votre nouveau mot de passe est enregistré. Vos autres sessions sont fermées.", "success")
            return redirect(url_for("auth.account"))
        status = 422
    elif request.method == "POST":
        status = 422
    return render_template("auth/account.html", form=form, me=accounts.describe(current_user), **_sessions()), status


def _sessions() -> dict:
    token = session.get(SERVER_SESSION)
    rows = sessions.open_sessions(current_user)
    return {"open_sessions": [(row, sessions.is_current(row, token)) for row in rows]}


@bp.route("/mon-compte/sessions/fermer", methods=["POST"])
@login_required
@limiter.limit("30 per minute")
def close_session():
    """« Fermer » one of the person's sessions (another browser, a lost computer), or all the others."""
    token = session.get(SERVER_SESSION)
    if request.form.get("toutes") == "1":
        with transaction():
            count = sessions.end_all(current_user, "closed", keep_token=token)
        flash(f"{count} autre(s) session(s) fermée(s).", "success")
        return redirect(url_for("auth.account", _anchor="sessions"), 303)
    ident = request.form.get("id", "")
    try:
        with transaction():
            row = sessions.close_session(current_user, int(ident) if ident.isdigit() and len(ident) < 10 else None)
    except ServiceError as error:
        flash(f"Session non fermée : {error}", "error")
        return redirect(url_for("auth.account", _anchor="sessions"), 303)
    if sessions.is_current(row, token):
        logout_user()
        _clear_session()
        flash("Cette session est fermée : reconnectez-vous.", "info")
        return redirect(url_for("auth.login"), 303)
    flash("La session est fermée.", "success")
    return redirect(url_for("auth.account", _anchor="sessions"), 303)


def init_app(app: Flask, login_manager: LoginManager) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Connectez-vous pour accéder à cette page."
    login_manager.login_message_category = "info"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
        if user is None or not user.is_active:
            return None
        if session.get(FINGERPRINT) != accounts.session_fingerprint(user):
            return None  # the password changed since this session began
        return user

    audit.resolve_request_actor_with(_request_actor)
    app.register_blueprint(bp)


def _request_actor() -> audit.Actor | None:
    """Who acts in the current request, for the audit trail: the logged-in person, else « anonyme »."""
    if not has_request_context():
        return None
    if current_user and current_user.is_authenticated:
        return current_user.id, audit.actor_label(current_user)
    return None, "anonyme"

"""« Couverture du territoire »: where an institution's experts leave gaps, or overlap.

Partner referents see their own institution (or antenne); staff choose any institution. The
figures come from ``services.coverage``; this view only picks the scope and links each gap to
the pages where it can be fixed (an expert's or an antenne's edit page, the simulator).
"""

from __future__ import annotations

from typing import Any

from flask import abort, request, url_for
from flask_admin import Admin, expose
from flask_login import current_user
from sqlalchemy import select

from app import policy
from app.admin.base import SecureBaseView
from app.extensions import db
from app.models import Antenne, Institution
from app.services.addressbook import coverage, coverage_map
from app.services.errors import ServiceError


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        abort(404)


class CoverageView(SecureBaseView):
    referent_access = "read"

    # ------------------------------------------------------------ scope

    def _scope(self) -> tuple[Institution | None, Antenne | None]:
        """The institution (and antenne) shown: a referent's own, whatever the URL says (another
        one is a 404: its existence is not theirs to probe); staff pick one with ``institution``."""
        try:
            scope = policy.referent_scope(current_user)
        except ServiceError:
            abort(403)
        asked = _int_arg("institution")
        if scope is None:
            if asked is None:
                return None, None
            institution = db.session.get(Institution, asked)
            if institution is None:
                abort(404)
            return institution, None
        institution = scope.institution if isinstance(scope, Antenne) else scope
        if asked is not None and asked != institution.id:
            abort(404)
        return institution, scope if isinstance(scope, Antenne) else None

    def _scope_args(self, institution: Institution) -> dict[str, Any]:
        return {"institution": institution.id} if current_user.is_admin else {}

    # ------------------------------------------------------------ links to fix a gap

    def _view(self, endpoint: str):
        return next((v for v in self.admin._views if v.endpoint == endpoint), None)

    def _edit_url(self, endpoint: str, ident: int, back: str) -> str | None:
        """The edit page of a record, when the current user may edit there; else None."""
        view = self._view(endpoint)
        if view is None or not getattr(view, "can_edit", False) or not view.is_accessible():
            return None
        return url_for(f"{endpoint}.edit_view", id=ident, url=back)

    def _simulator_url(self, subject_slug: str, commune_code: str) -> str | None:
        view = self._view("routing")
        if view is None or not view.is_accessible():
            return None
        return url_for("routing.index", subject=subject_slug, commune=commune_code)

    # ------------------------------------------------------------ pages

    @expose("/")
    def index(self):
        institution, antenne = self._scope()
        context: dict[str, Any] = {
            "institution": institution,
            "antenne": antenne,
            "institutions": [],
            "report": None,
            "selected": None,
            "labels": coverage.STATE_LABELS,
            "map": None,
        }
        if current_user.is_admin:
            context["institutions"] = list(
                db.session.scalars(
                    select(Institution).where(Institution.deleted_at.is_(None)).order_by(Institution.name)
                )
            )
        if institution is None:
            return self.render("admin/coverage.html", **context)
        report = coverage.coverage_report(institution, antenne)
        selected = report.subject(request.args.get("sujet")) or (report.subjects[0] if report.subjects else None)
        context.update(report=report, selected=selected, scope_args=self._scope_args(institution))
        if selected is not None:
            context["map"] = coverage_map.departement_map(selected)
        return self.render("admin/coverage.html", **context)

    @expose("/departement")
    def departement(self):
        institution, antenne = self._scope()
        if institution is None:
            abort(404)
        subject_slug = request.args.get("sujet", "")
        try:
            detail = coverage.departement_detail(
                institution, antenne, subject_slug, request.args.get("departement", "")
            )
        except ServiceError as error:
            abort(404, description=str(error))
        scope_args = self._scope_args(institution)
        back = url_for(".departement", **scope_args, sujet=subject_slug, departement=detail.departement.code)
        sample = detail.uncovered[0].code if detail.uncovered else None
        return self.render(
            "admin/coverage_departement.html",
            institution=institution,
            antenne=antenne,
            detail=detail,
            scope_args=scope_args,
            labels=coverage.STATE_LABELS,
            antennes=[(c, self._edit_url("antenne", c.id, back)) for c in detail.antennes],
            experts=[(c, self._edit_url("expert", c.id, back)) for c in detail.experts],
            simulator_url=self._simulator_url(subject_slug, sample) if sample else None,
        )


def register(admin: Admin) -> None:
    admin.add_view(
        CoverageView(name="Couverture du territoire", category="Annuaire", endpoint="coverage", url="couverture")
    )

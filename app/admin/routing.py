"""The simulator « Qui recevrait cette demande ? »: staff check the routing rule on a subject
and a commune before a real business asks, through the same service verb as the request flow."""

from __future__ import annotations

from flask import jsonify, request
from flask_admin import Admin, expose

from app.admin.base import SecureBaseView
from app.services.addressbook import routing
from app.services.addressbook.routing_filters import company_for_explain
from app.services.errors import ServiceError
from app.services.reference.registry import HEADCOUNT_BRACKETS

# The company's facts the simulator takes (issue 14), as query parameters.
COMPANY_FIELDS = ("siret", "naf", "headcount_code", "created", "legal_form", "activity")


class RoutingView(SecureBaseView):
    @expose("/")
    def index(self):
        subject_slug = request.args.get("subject", "").strip()
        commune_text = request.args.get("commune", "").strip()
        context = {
            "themes": routing.routable_subjects(),
            "subject_slug": subject_slug,
            "commune_text": commune_text,
            "error": None,
            "choices": [],
            "result": None,
            "company": {name: request.args.get(name, "").strip()[:40] for name in COMPANY_FIELDS},
            "headcounts": HEADCOUNT_BRACKETS,
            "describe_company": routing.describe_company,
        }
        if "subject" in request.args or "commune" in request.args:
            try:
                if not subject_slug:
                    raise ServiceError("Choisissez un sujet.")
                lookup = routing.resolve_commune(commune_text)
                if lookup.insee_code:
                    company = company_for_explain(lookup.insee_code, **context["company"])
                    context["result"] = routing.explain(subject_slug, lookup.insee_code, company)
                else:
                    context["choices"] = lookup.choices
            except ServiceError as error:
                context["error"] = str(error)
        status = 422 if context["error"] else 200
        return self.render("admin/routing.html", **context), status

    @expose("/communes")
    def communes(self):
        return jsonify(routing.commune_suggestions(request.args.get("q", "")))


def register(admin: Admin) -> None:
    admin.add_view(
        RoutingView(name="Qui recevrait cette demande ?", category="Annuaire", endpoint="routing", url="aiguillage")
    )

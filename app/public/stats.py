"""The public statistics (issue 15): ``/stats`` (charts drawn on the server as SVG, each with its
data table and a sentence for screen readers; no script), ``/stats.csv`` and ``/stats.json``
(the same series, same filters, Licence Ouverte). Everything is read from the aggregates."""

from __future__ import annotations

import csv
import io

from flask import Response, jsonify, render_template, request, url_for
from sqlalchemy import select

from app.extensions import db
from app.models import Region, Theme
from app.public import bp
from app.services.statistics.figures import LICENCE, SMALL_TEXT, month_label, parse_filters, stats_page


@bp.route("/stats")
def stats():
    filters = parse_filters(request.args)
    page = stats_page(filters)
    return render_template(
        "public/stats.html",
        page=page,
        filters=filters,
        regions=db.session.scalars(select(Region).order_by(Region.name)).all(),
        themes=db.session.scalars(select(Theme).order_by(Theme.position, Theme.id)).all(),
        month_label=month_label,
        licence=LICENCE,
        small_text=SMALL_TEXT,
        csv_url=url_for("public.stats_csv", **filters.args()),
        json_url=url_for("public.stats_json", **filters.args()),
    ), (422 if filters.errors else 200)


@bp.route("/stats.csv")
def stats_csv():
    filters = parse_filters(request.args)
    if filters.errors:
        return Response("\n".join(filters.errors) + "\n", status=400, mimetype="text/plain")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["indicateur", "mois", "valeur"])
    writer.writerows(stats_page(filters).csv_rows())
    response = Response(buffer.getvalue(), mimetype="text/csv")
    response.charset = "utf-8"
    response.headers["Content-Disposition"] = "attachment; filename=place-des-entreprises-statistiques.csv"
    response.headers["X-Licence"] = LICENCE
    return response


@bp.route("/stats.json")
def stats_json():
    filters = parse_filters(request.args)
    if filters.errors:
        return jsonify({"erreurs": filters.errors}), 400
    rows = stats_page(filters).csv_rows()
    return jsonify(
        {
            "licence": LICENCE,
            "filtres": filters.args(),
            "series": [{"indicateur": name, "mois": month, "valeur": value} for name, month, value in rows],
        }
    )

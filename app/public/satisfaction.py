"""The business's satisfaction survey, opened from its email (``/satisfaction/<token>``).

The link's « Oui » and « Non » prefill the first question rather than record it: mail
scanners open the links of an email they check, and an answer must be the business's own.
"""

from __future__ import annotations

from flask import render_template, request
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectMultipleField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired
from wtforms.widgets import CheckboxInput, ListWidget

from app.models.desk import SATISFACTION_OUTCOMES
from app.public import bp
from app.services.errors import ServiceError
from app.services.messaging.links import LinkError
from app.services.requests.satisfaction import MAX_COMMENT_LENGTH, answer_of, need_for_survey, record_answer
from app.services.transactions import transaction

YES_NO = [SelectChoice("oui", "Oui"), SelectChoice("non", "Non")]


class SurveyForm(FlaskForm):
    contacted = RadioField(
        "Avez-vous été rappelé(e) par au moins un conseiller ?",
        choices=YES_NO,
        validators=[InputRequired("Indiquez si un conseiller vous a rappelé(e).")],
    )
    useful = RadioField("Cet échange vous a-t-il été utile ?", choices=YES_NO, validate_choice=False)
    outcomes = SelectMultipleField(
        "Cet échange vous a permis de :",
        choices=[SelectChoice(value, label) for value, label in SATISFACTION_OUTCOMES.items()],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validate_choice=False,  # the service refuses an unknown answer, in French
    )
    comment = TextAreaField("Un commentaire ? (facultatif)")


def _yes_no(value: str | None) -> bool | None:
    return {"oui": True, "non": False}.get(value or "")


def _as_choice(value: bool | None) -> str | None:
    return None if value is None else ("oui" if value else "non")


@bp.route("/satisfaction/<token>", methods=["GET", "POST"])
def satisfaction(token: str):
    try:
        need = need_for_survey(token)
    except LinkError as error:
        return render_template("public/error.html", title=error.title, message=str(error), status=error.http_status), (
            error.http_status
        )
    previous = answer_of(need)
    form = SurveyForm()
    if request.method == "GET":
        if previous is not None:
            form.contacted.data = _as_choice(previous.contacted)
            form.useful.data = _as_choice(previous.useful)
            form.outcomes.data = list(previous.outcomes or [])
            form.comment.data = previous.comment
        if request.args.get("reponse") in ("oui", "non"):
            form.contacted.data = request.args["reponse"]
    general_errors: list[str] = []
    if form.validate_on_submit():
        try:
            with transaction():
                record_answer(
                    need,
                    contacted=_yes_no(form.contacted.data),
                    useful=_yes_no(form.useful.data),
                    outcomes=form.outcomes.data,
                    comment=form.comment.data,
                )
        except ServiceError as error:
            general_errors.append(str(error))
        else:
            return render_template("public/satisfaction_thanks.html", subject=need.subject.label)
    status = 422 if request.method == "POST" else 200
    return (
        render_template(
            "public/satisfaction.html",
            form=form,
            subject=need.subject.label,
            answered=previous is not None,
            general_errors=general_errors,
            max_comment=MAX_COMMENT_LENGTH,
        ),
        status,
    )

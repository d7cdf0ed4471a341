"""Forms of the signed-in pages (CSRF-protected by flask-wtf)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, IntegerField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, NumberRange, Optional


def feature_form(feature_names: list[str]) -> FlaskForm:
    """A form with one labelled text field per model feature, in model order."""

    class FeatureForm(FlaskForm):
        submit = SubmitField("Predict")

    for i, name in enumerate(feature_names):
        setattr(
            FeatureForm,
            f"f{i}",
            StringField(
                name, render_kw={"inputmode": "decimal", "autocomplete": "off"}
            ),
        )
    return FeatureForm()


class CSVForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file.")])
    submit = SubmitField("Upload and predict")


class ApiKeyForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(), Length(max=120)],
        description="A label to tell your keys apart.",
    )
    scope_predict = BooleanField("predict", default=True)
    scope_admin = BooleanField("admin")
    scope_feedback = BooleanField("feedback")
    expires_days = IntegerField(
        "Expires after (days)",
        validators=[Optional(), NumberRange(1, 3650)],
        description="Leave empty for a key that does not expire.",
    )
    submit = SubmitField("Create key")

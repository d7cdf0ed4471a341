"""Forms of the admin pages (CSRF-protected by flask-wtf)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    FloatField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
)

from app.models.users import ROLES


class UploadForm(FlaskForm):
    name = StringField(
        "Model name",
        validators=[DataRequired(), Length(max=64)],
        description="Lowercase letters, digits, '_', '.', '-'. A new "
        "name creates a new model.",
    )
    file = FileField(
        "Model file (.skops, .joblib, .pkl, .onnx)",
        validators=[FileRequired("Choose a model file.")],
    )
    description = StringField(
        "Model description", validators=[Optional(), Length(max=500)]
    )
    notes = TextAreaField("Version notes", validators=[Optional(), Length(max=5000)])
    metrics = TextAreaField(
        "Metrics (JSON object)",
        validators=[Optional()],
        description='For example {"accuracy": 0.97}',
    )
    reference = FileField(
        "Reference sample for drift (CSV, optional)",
        description="Training or validation rows, a first row naming the "
        "features; ModelDock compares live inputs with them.",
    )
    submit = SubmitField("Upload and validate")


class UserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=80)])
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=200)],
        description="8 characters or more.",
    )
    role = SelectField("Role", choices=list(ROLES), default="user")
    submit = SubmitField("Create user")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=list(ROLES))
    submit = SubmitField("Change role")


class CanaryForm(FlaskForm):
    weight = IntegerField(
        "Share of clients on the canary (%)",
        default=10,
        validators=[InputRequired(), NumberRange(min=0, max=100)],
        description="Sticky per client; raising it only adds clients.",
    )
    reason = StringField(
        "Reason (optional, kept in the audit log)",
        validators=[Optional(), Length(max=500)],
    )
    submit = SubmitField("Confirm")


class RuntimeForm(FlaskForm):
    runtime = SelectField(
        "Runtime",
        choices=[
            SelectChoice(
                "auto",
                "auto: the verified ONNX graph when there is one, else scikit-learn",
            ),
            SelectChoice("onnx", "onnx: always onnxruntime"),
            SelectChoice("sklearn", "sklearn: always scikit-learn"),
        ],
    )
    reason = StringField(
        "Reason (optional, kept in the audit log)",
        validators=[Optional(), Length(max=500)],
    )
    submit = SubmitField("Confirm")


class BatchingForm(FlaskForm):
    max_rows = IntegerField(
        "Most rows per batch",
        validators=[Optional(), NumberRange(min=0, max=1024)],
        description="Empty: the deployment's default. 0 turns batching off.",
    )
    max_wait_ms = FloatField(
        "Longest wait for company (ms)",
        validators=[Optional(), NumberRange(min=0, max=1000)],
        description="Empty: the deployment's default.",
    )
    reason = StringField(
        "Reason (optional, kept in the audit log)",
        validators=[Optional(), Length(max=500)],
    )
    submit = SubmitField("Save")


class FeedbackUploadForm(FlaskForm):
    file = FileField(
        "Feedback CSV",
        validators=[FileRequired("Choose a CSV file.")],
        description="Header: request_id, row (optional, 0 when absent) and label "
        "(classifiers) or value (regressors).",
    )
    submit = SubmitField("Upload feedback")

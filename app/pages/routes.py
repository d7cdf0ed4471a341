"""The home page lists the models a signed-in user can call."""

from flask import render_template
from flask_login import login_required
from sqlalchemy import select

from app.extensions import db
from app.models import MLModel
from app.pages import bp
from app.registry import describe


@bp.get("/")
@login_required
def index():
    models = db.session.scalars(select(MLModel).order_by(MLModel.name))
    return render_template("pages/index.html",
                           models=[describe.model_dict(m) for m in models])

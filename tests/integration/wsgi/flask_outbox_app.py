"""The Flask + Flask-SQLAlchemy app of docs/flask.md: its sign-up mail goes through the outbox.

The web process writes the mail job in the request's own transaction (with
the user row, or not at all); ``apitask worker --app
flask_outbox_app:make_registry`` sends it. The SMTP server's port comes from
``FLASK_TEST_SMTP_PORT``.
"""

from __future__ import annotations

import functools
import os

from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import apitask
from apitask.mail import MailTask, Message, SMTPClient
from apitask.outbox import TaskRegistry, open_outbox
from apitask.wsgi import TaskMiddleware


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(db.Model):  # type: ignore[name-defined,misc]  # Flask-SQLAlchemy's dynamic base
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(unique=True)


@functools.cache
def mailer() -> SMTPClient:
    """The SMTP client: used to send by the worker only; the web process stores mails."""
    return SMTPClient(
        host="127.0.0.1",
        port=int(os.environ["FLASK_TEST_SMTP_PORT"]),
        sender="Acme <no-reply@acme.example>",
        tls="none",
        timeout=5.0,
    )


def welcome(email: str) -> MailTask:
    return MailTask(Message(to=email, subject="Welcome", text="Hello!", type="welcome"), mailer())


def make_registry() -> TaskRegistry:
    """What the worker rebuilds stored mails with (``--app flask_outbox_app:make_registry``)."""
    registry = TaskRegistry()
    registry.register_prefix("mailer.", MailTask.factory(mailer()))
    return registry


def create_app(url: str, schema: str | None = None) -> Flask:
    """The app on the database at ``url`` (a SQLAlchemy URL), outbox tables in ``schema``."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    if schema is not None:
        # The app's tables in the test's own schema (the outbox names its schema itself).
        options = {"connect_args": {"options": f"-c search_path={schema}"}}
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    outbox = open_outbox(url, schema=schema)
    app.extensions["outbox"] = outbox
    # Every request's apitask.run_sync goes to the outbox.
    app.wsgi_app = TaskMiddleware(app.wsgi_app, sink=outbox.sink)  # type: ignore[method-assign]

    @app.post("/signup")
    def signup() -> tuple[str, int]:
        email = request.form["email"]
        db.session.add(User(email=email))
        outbox.enqueue_sync(db.session, welcome(email))
        if request.form.get("terms") != "accepted":
            # A check after the mail was enqueued fails: the rollback drops the mail too.
            db.session.rollback()
            return "accept the terms", 422
        db.session.commit()
        return "welcome", 201

    @app.post("/invite")
    def invite() -> tuple[str, int]:
        email = request.form["email"]
        with outbox.transaction_sync(db.session):
            db.session.add(User(email=email))
            apitask.run_sync(welcome(email))
        db.session.commit()
        return "invited", 201

    return app

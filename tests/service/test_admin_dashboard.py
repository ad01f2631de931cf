"""apitask's dashboard in the service: at /admin/apitask, for admin tokens only."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import jwt

from .conftest import SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

PASSWORD = "correct horse battery staple"


async def test_admins_only(make_service: Callable[..., Any]) -> None:
    svc: Service = await make_service(mailer_delivery="outbox")
    assert (await svc.http.get("/admin/apitask/")).status_code == 403
    user = jwt.encode({"role": "authenticated", "sub": "x"}, SECRET, algorithm="HS256")
    as_user = await svc.http.get("/admin/apitask/", headers={"Authorization": f"Bearer {user}"})
    assert as_user.status_code == 403
    forged = jwt.encode({"role": "service_role"}, "another-secret-of-32-bytes-or-more", "HS256")
    as_forger = await svc.http.get("/admin/apitask/", headers={"Authorization": f"Bearer {forged}"})
    assert as_forger.status_code == 403
    page = await svc.http.get("/admin/apitask/", headers=svc.admin_headers())
    assert page.status_code == 200
    assert "signed in as service_role:-" in page.text
    assert 'href="/admin/apitask/static/dashboard.css"' in page.text


async def test_a_signup_mail_job_is_shown_without_its_code(
    make_service: Callable[..., Any],
) -> None:
    svc: Service = await make_service(mailer_delivery="outbox")
    address = email()
    signup = await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    assert signup.status_code == 200
    runtime = svc.app.state.service.mailer.runtime
    jobs = await runtime.outbox.list()
    assert jobs, "the signup wrote a mail job"
    page = await svc.http.get(f"/admin/apitask/jobs/{jobs[0].id}", headers=svc.admin_headers())
    assert page.status_code == 200
    assert jobs[0].type in page.text
    # The code is in the stored body until the mail is sent (then the payload is erased).
    stored = json.loads(jobs[0].payload).get("message", {}).get("text", "")
    codes = re.findall(r": (\d{6,10})\s*$", stored, re.MULTILINE)
    codes += [svc.otp(mail.to) for mail in svc.sent]
    assert codes
    for code in codes:
        assert code not in page.text


async def test_browser_sign_in_sets_a_cookie_for_the_dashboard_only(
    make_service: Callable[..., Any],
) -> None:
    svc: Service = await make_service(mailer_delivery="pool")
    form = await svc.http.get("/admin/apitask-session")
    assert 'name="token"' in form.text
    refused = await svc.http.post("/admin/apitask-session", data={"token": "nonsense"})
    assert refused.status_code == 403
    token = svc.admin_headers()["Authorization"].removeprefix("Bearer ")
    signed_in = await svc.http.post("/admin/apitask-session", data={"token": token})
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/admin/apitask/"
    cookie = signed_in.headers["set-cookie"]
    assert "Path=/admin/apitask" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    page = await svc.http.get("/admin/apitask/")
    assert page.status_code == 200
    assert "Pool (" in page.text


async def test_not_mounted_without_an_outbox(make_service: Callable[..., Any]) -> None:
    svc: Service = await make_service(mailer_delivery="inline")
    response = await svc.http.get("/admin/apitask/", headers=svc.admin_headers())
    assert response.status_code == 404


async def test_the_smtp_clients_latency_is_drawn(make_service: Callable[..., Any]) -> None:
    """An SMTP transport's send latency is drawn (the dev inbox's); a test's recorder has none."""
    dev: Service = await make_service(record=False, dev=True, mailer_delivery="pool")
    page = await dev.http.get("/admin/apitask/", headers=dev.admin_headers())
    assert "SMTP send latency" in page.text
    recorded: Service = await make_service(mailer_delivery="pool")
    page = await recorded.http.get("/admin/apitask/", headers=recorded.admin_headers())
    assert page.status_code == 200
    assert "SMTP send latency" not in page.text

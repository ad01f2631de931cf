"""``POST /signup``: a user row and its welcome mail, in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from djsite.signups.models import Signup

if TYPE_CHECKING:
    from django.http import HttpRequest


@csrf_exempt  # type: ignore[untyped-decorator]
def signup(request: HttpRequest) -> HttpResponse:
    """``email`` and optional ``rollback=1`` (the mail is queued, then the sign-up undone)."""
    email = request.POST["email"]
    with transaction.atomic():
        Signup.objects.create(email=email)
        send_mail("Welcome", f"Hello {email}", None, [email])
        if request.POST.get("rollback") == "1":
            transaction.set_rollback(True)
            return HttpResponse("rolled back", status=409)
    return HttpResponse("ok")

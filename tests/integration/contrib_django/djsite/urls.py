from __future__ import annotations

from django.urls import path
from djsite import views

urlpatterns = [
    path("signup", views.signup),
]

"""The packages' lazy names: one module ``__getattr__`` (apitask._exports.lazy_names)."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

import pytest

import apitask.contrib.django
import apitask.mail
import apitask.outbox
import apitask.webhooks
from apitask._exports import lazy_names

if TYPE_CHECKING:
    import types


@pytest.mark.parametrize(
    ("package", "name", "module", "dependency", "extra"),
    [
        (apitask.mail, "SMTPClient", "apitask.mail._smtp._client", "aiosmtplib", "mail"),
        (apitask.webhooks, "HTTPWebhookClient", "apitask.webhooks._client", "httpx", "webhooks"),
        (
            apitask.contrib.django,
            "EmailBackend",
            "apitask.contrib.django._mail",
            "django",
            "django",
        ),
    ],
)
def test_a_lazy_name_without_its_extra_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch,
    package: types.ModuleType,
    name: str,
    module: str,
    dependency: str,
    extra: str,
) -> None:
    """As when the extra is not installed: the dependency cannot be imported."""
    monkeypatch.delitem(sys.modules, module, raising=False)
    # "import <dependency>" now fails, and so does importing any of its submodules:
    # one another test already loaded (django.core.mail, after the Django tests) is
    # found in sys.modules without its parent package being looked at.
    for loaded in [key for key in sys.modules if key.startswith(f"{dependency}.")]:
        monkeypatch.setitem(sys.modules, loaded, None)
    monkeypatch.setitem(sys.modules, dependency, None)
    with pytest.raises(ModuleNotFoundError) as raised:
        getattr(package, name)
    said = str(raised.value)
    assert said.startswith(f"{package.__name__}.{name} needs the {extra!r} extra: ")
    assert f"pip install 'apitask[{extra}]'" in said
    assert (raised.value.name or "").partition(".")[0] == dependency


def test_with_the_extra_the_name_loads_under_its_public_path() -> None:
    client = apitask.webhooks.HTTPWebhookClient
    assert client is importlib.import_module("apitask.webhooks._client").HTTPWebhookClient
    assert client.__module__ == "apitask.webhooks"


def test_a_missing_part_of_apitask_itself_is_not_blamed_on_the_extra() -> None:
    lazy = lazy_names("apitask.mail", {"Gone": "._no_such_module"}, extra="mail")
    with pytest.raises(
        ModuleNotFoundError, match=r"No module named 'apitask\.mail\._no_such_module'"
    ):
        lazy("Gone")


def test_without_an_extra_a_missing_module_is_raised_as_it_is() -> None:
    lazy = lazy_names("apitask", {"Thing": "no_such_top_level_module"})
    with pytest.raises(ModuleNotFoundError, match="No module named 'no_such_top_level_module'"):
        lazy("Thing")


@pytest.mark.parametrize(
    "package", [apitask.mail, apitask.webhooks, apitask.contrib.django, apitask.outbox]
)
def test_an_unknown_name_is_an_attribute_error(package: types.ModuleType) -> None:
    with pytest.raises(AttributeError, match=rf"module '{package.__name__}' has no attribute 'x'"):
        package.x  # noqa: B018


def test_a_moved_name_warns_and_loads_from_its_new_module() -> None:
    with pytest.warns(DeprecationWarning, match=r"outbox\.load_registry moved to apitask\.cli"):
        moved = apitask.outbox.load_registry
    assert moved is importlib.import_module("apitask.cli").load_registry

"""apitask.mail's public surface is exactly ``__all__``, under its public path."""

from __future__ import annotations

import pickle
import subprocess
import sys
import types

import pytest

import apitask.mail

# Imported on first use (they need aiosmtplib): in __all__, not yet in the namespace.
LAZY = {"SMTPClient", "SMTPCounters", "TLSMode"}


def test_all_is_sorted_exact_and_importable() -> None:
    """Every name in __all__ exists; no public name is missing from it."""
    assert apitask.mail.__all__ == sorted(apitask.mail.__all__)
    assert len(set(apitask.mail.__all__)) == len(apitask.mail.__all__)
    public = {
        name
        for name, value in vars(apitask.mail).items()
        # Subpackages appear here once imported; they are private anyway.
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    not_api = {"annotations"}  # the __future__ import
    assert set(apitask.mail.__all__) == (public - not_api) | LAZY
    for name in apitask.mail.__all__:
        assert getattr(apitask.mail, name) is not None


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'check_syntax'"):
        _ = apitask.mail.check_syntax


@pytest.mark.parametrize("name", apitask.mail.__all__)
def test_public_classes_and_functions_show_the_public_module(name: str) -> None:
    """Reprs, tracebacks and API docs say apitask.mail.X, not a private module."""
    value = getattr(apitask.mail, name)
    if isinstance(value, type | types.FunctionType):
        assert value.__module__ == "apitask.mail"


def test_values_still_pickle_under_the_public_path() -> None:
    """Pickle finds the classes again under the rewritten path."""
    source = apitask.mail.TemplateSource("file", "/etc/mail/invite.html")
    assert pickle.loads(pickle.dumps(source)) == source
    error = pickle.loads(pickle.dumps(apitask.mail.PermanentMailError("refused")))
    assert (type(error), str(error)) == (apitask.mail.PermanentMailError, "refused")
    reason = apitask.mail.AddressReason.SYNTAX
    assert pickle.loads(pickle.dumps(reason)) is reason


def test_the_module_path_is_public_without_the_smtp_extra_imported() -> None:
    """Rewriting the module paths imports nothing lazy (no aiosmtplib at import)."""
    code = (
        "import sys\n"
        "import apitask.mail\n"
        "print('aiosmtplib' in sys.modules, apitask.mail.Message.__module__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == "False apitask.mail\n"

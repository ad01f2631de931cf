"""The error hierarchy: what can be caught as what."""

from __future__ import annotations

import pytest

import apitask


def test_every_error_is_an_apitask_error() -> None:
    """One root catches everything apitask raises on purpose."""
    for cls in (apitask.TaskError, apitask.PoolClosedError, apitask.QueueFullError):
        assert issubclass(cls, apitask.ApitaskError)
        assert issubclass(cls, RuntimeError)  # misuse, not a runtime failure
    assert issubclass(apitask.TransientError, apitask.ApitaskError)


def test_subsystem_errors_are_apitask_errors() -> None:
    """The outbox's and the mail client's errors sit under the same root; the
    outbox's job timeout is transient (retried), an undecodable job is not."""
    from apitask import mail, outbox

    for cls in (
        outbox.OutboxError,
        outbox.JobDecodeError,
        outbox.JobTimeoutError,
        mail.MailError,
        mail.TransientMailError,
    ):
        assert issubclass(cls, apitask.ApitaskError), cls
    assert issubclass(outbox.JobTimeoutError, apitask.TransientError)
    assert not issubclass(outbox.JobDecodeError, apitask.TransientError)


def test_transient_error_carries_retry_after() -> None:
    """A task can say how long the far side asked it to wait."""
    err = apitask.TransientError("451 try later", retry_after=30.0)
    assert str(err) == "451 try later"
    assert err.retry_after == 30.0
    assert apitask.TransientError("x").retry_after is None


def test_cli_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`apitask --version` prints the version; no command prints help and exits 2."""
    from apitask.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert apitask.__version__ in capsys.readouterr().out
    assert main([]) == 2
    assert "usage: apitask" in capsys.readouterr().err

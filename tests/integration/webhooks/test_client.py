"""HTTPWebhookClient against a real receiver that verifies with the reference library."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from typing import TYPE_CHECKING

import pytest

from apitask import Backoff, WorkerPool
from apitask.webhooks import (
    HTTPWebhookClient,
    InvalidWebhookError,
    PermanentWebhookError,
    TransientWebhookError,
    Webhook,
    WebhookResponse,
    WebhookTask,
    WebhookTimeoutError,
)

from .receiver import OTHER_SECRET, SECRET, Answer, Received, Receiver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from apitask import JSONValue


def hook(url: str, name: str = "send-email") -> Webhook:
    return Webhook.create(name, url, {"user": {"id": "u1"}, "email_data": {"token": "123456"}})


@pytest.fixture
async def client() -> AsyncIterator[HTTPWebhookClient]:
    http = HTTPWebhookClient([SECRET], timeout=2)
    yield http
    await http.aclose()


def serve(script: Callable[[int, Received], Answer] | None = None, **kw: str) -> Receiver:
    return Receiver(script=script, **kw)


async def test_a_webhook_arrives_signed_as_the_standard_says(client: HTTPWebhookClient) -> None:
    async with serve() as receiver:
        webhook = hook(receiver.url)
        answer = await client.send(webhook)
    assert answer == WebhookResponse(204, "", b"")
    [request] = receiver.requests
    assert request.verified
    assert request.webhook_id == webhook.id
    assert request.json() == webhook.body
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "apitask-webhooks"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5


async def test_each_attempt_signs_anew_with_the_same_id() -> None:
    """A retry carries a fresh timestamp (receivers refuse old ones) but the same id."""
    now = [1_000_000.0]
    http = HTTPWebhookClient([SECRET], clock=lambda: now[0])
    try:
        # The reference verifier refuses timestamps older than 5 minutes: set the clock right.
        now[0] = time.time() - 60
        async with serve() as receiver:
            webhook = hook(receiver.url)
            await http.send(webhook)
            now[0] += 30
            await http.send(webhook)
    finally:
        await http.aclose()
    first, second = receiver.requests
    assert first.verified and second.verified
    assert first.webhook_id == second.webhook_id == webhook.id
    assert int(second.headers["webhook-timestamp"]) == int(first.headers["webhook-timestamp"]) + 30
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]


async def test_a_receiver_holding_either_rotated_secret_verifies() -> None:
    http = HTTPWebhookClient([SECRET, OTHER_SECRET])
    try:
        for secret in (SECRET, OTHER_SECRET):
            async with serve(secret=secret) as receiver:
                await http.send(hook(receiver.url))
            assert [r.verified for r in receiver.requests] == [True]
    finally:
        await http.aclose()


async def test_a_wrong_secret_is_refused_by_the_receiver_as_permanent() -> None:
    http = HTTPWebhookClient([OTHER_SECRET])
    try:
        async with serve() as receiver:
            with pytest.raises(PermanentWebhookError) as raised:
                await http.send(hook(receiver.url))
    finally:
        await http.aclose()
    assert raised.value.status == 401
    port = receiver.url.split(":")[2].split("/")[0]
    assert str(raised.value) == f"webhook send-email to 127.0.0.1:{port}: HTTP 401: bad sig"


async def test_no_log_line_names_the_receivers_url(
    client: HTTPWebhookClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The URL's path and query may hold a credential: httpx's client logs the whole
    URL of every request at INFO, so the webhook client does not go through it."""
    async with serve() as receiver:
        with caplog.at_level(logging.DEBUG):
            await client.send(hook(receiver.url + "?key=k-secret"))
    assert [r.verified for r in receiver.requests] == [True]
    assert caplog.records  # httpcore's DEBUG lines: the capture works
    assert not [r for r in caplog.records if "k-secret" in r.getMessage()]


async def test_a_receiver_echoing_the_body_leaves_its_values_out_of_the_error(
    client: HTTPWebhookClient,
) -> None:
    """A 422 that repeats what it was sent does not put the one-time code in the
    error's text (logged, and stored as an outbox job's last_error)."""
    body: dict[str, JSONValue] = {
        "user": {"id": "u1", "phone": "15550001111", "factors": [{"secret": "abcdef"}], "ok": True},
        "sms": {"otp": "123456"},
    }
    async with serve(lambda n, r: Answer(422, b"invalid input: " + r.body)) as receiver:
        with pytest.raises(PermanentWebhookError) as raised:
            await client.send(Webhook.create("send-sms", receiver.url, body))
    said = str(raised.value)
    assert "123456" not in said
    assert "15550001111" not in said
    assert said.endswith(
        'HTTP 422: invalid input: {"user":{"id":"u1","phone":"***",'
        '"factors":[{"secret":"***"}],"ok":true},"sms":{"otp":"***"}}'
    )


async def test_check_reads_a_2xx_answer_and_may_refuse_it() -> None:
    def check(answer: WebhookResponse) -> None:
        if json.loads(answer.body).get("error"):
            raise PermanentWebhookError("the hook said no", status=answer.status)

    body = json.dumps({"error": {"http_code": 400, "message": "no"}}).encode()
    http = HTTPWebhookClient([SECRET], check=check)
    try:
        async with serve(
            lambda n, r: Answer(200, body, {"content-type": "application/json"})
        ) as rx:
            with pytest.raises(PermanentWebhookError, match="the hook said no"):
                await http.send(hook(rx.url))
        async with serve(
            lambda n, r: Answer(200, b"{}", {"content-type": "application/json"})
        ) as rx:
            answer = await http.send(hook(rx.url))
    finally:
        await http.aclose()
    assert answer == WebhookResponse(200, "application/json", b"{}")


async def test_a_check_redacts_what_the_answer_echoes_of_the_body() -> None:
    """A 2xx answer reporting a failure may quote the body: ``redact`` takes it out."""

    def check(answer: WebhookResponse) -> None:
        said = json.loads(answer.body)["error"]["message"]
        raise PermanentWebhookError(answer.redact(said), status=answer.status)

    def echo(n: int, request: Received) -> Answer:
        token = request.json()["email_data"]["token"]
        return Answer(200, json.dumps({"error": {"message": f"bad token {token}"}}).encode())

    http = HTTPWebhookClient([SECRET], check=check)
    sent = hook("http://127.0.0.1/")
    try:
        async with serve(echo) as rx:
            with pytest.raises(PermanentWebhookError) as raised:
                await http.send(Webhook.create(sent.name, rx.url, sent.body))
    finally:
        await http.aclose()
    assert str(raised.value) == "bad token ***"
    assert "123456" not in repr(WebhookResponse(200, "", b"", sent.body))
    assert WebhookResponse(200, "", b"").redact("bad token 123456") == "bad token 123456"


async def test_a_checks_excerpt_follows_the_rule_of_a_non_2xx_answer() -> None:
    """``excerpt`` gives a 2xx answer's text what a non-2xx answer's gets: one
    line, no sent string, the first 300 characters and ``...``."""
    said = b"bad token 123456\r\n" + b"at line 1\n" * 100

    def check(answer: WebhookResponse) -> None:
        raise PermanentWebhookError(answer.excerpt(answer.body.decode()), status=answer.status)

    http = HTTPWebhookClient([SECRET], check=check)
    try:
        async with serve(lambda n, r: Answer(200 if n == 0 else 422, said)) as rx:
            with pytest.raises(PermanentWebhookError) as in_200:
                await http.send(hook(rx.url))
            with pytest.raises(PermanentWebhookError) as in_422:
                await http.send(hook(rx.url))
    finally:
        await http.aclose()
    shown = ("bad token *** " + "at line 1 " * 100)[:300] + "..."
    assert str(in_200.value) == shown
    assert str(in_422.value).endswith(f"HTTP 422: {shown}")


@pytest.mark.parametrize(
    ("answer", "kind", "retry_after", "said"),
    [
        (Answer(500, b"db down"), TransientWebhookError, None, ": db down"),
        (Answer(503, headers={"retry-after": "7"}), TransientWebhookError, 7.0, ""),
        (
            Answer(429, b"slow\r\ndown", {"retry-after": "soon"}),
            TransientWebhookError,
            None,
            ": slow down",
        ),
        (Answer(408), TransientWebhookError, None, ""),
        (Answer(400, b"phone is invalid"), PermanentWebhookError, None, ": phone is invalid"),
        (Answer(302, headers={"location": "http://elsewhere/"}), PermanentWebhookError, None, ""),
        (Answer(404, b"x" * 400), PermanentWebhookError, None, ": " + "x" * 300 + "..."),
    ],
)
async def test_statuses_are_classified_with_the_receivers_message(
    client: HTTPWebhookClient,
    answer: Answer,
    kind: type[Exception],
    retry_after: float | None,
    said: str,
) -> None:
    async with serve(lambda n, r: answer) as receiver:
        with pytest.raises(kind) as raised:
            await client.send(hook(receiver.url))
    error = raised.value
    assert isinstance(error, PermanentWebhookError | TransientWebhookError)
    assert error.status == answer.status
    assert str(error).endswith(f"HTTP {answer.status}{said}")
    if isinstance(error, TransientWebhookError):
        assert error.retry_after == retry_after
    assert [r.verified for r in receiver.requests] == [True]  # never followed a redirect


async def test_retry_after_as_an_http_date(client: HTTPWebhookClient) -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    naive = email.utils.formatdate(time.time() - 30, usegmt=True).replace("GMT", "-0000")
    for header, low, high in ((later, 20, 31), (naive, 0, 0)):
        answer = Answer(503, headers={"retry-after": header})
        async with serve(lambda n, r, a=answer: a) as receiver:  # type: ignore[misc]
            with pytest.raises(TransientWebhookError) as raised:
                await client.send(hook(receiver.url))
        assert raised.value.retry_after is not None
        assert low <= raised.value.retry_after <= high


async def test_a_stalled_receiver_is_a_timeout() -> None:
    http = HTTPWebhookClient([SECRET], timeout=0.3)
    try:
        async with serve(lambda n, r: Answer(stall=True)) as receiver:
            with pytest.raises(WebhookTimeoutError, match=r"no answer within 0\.3s") as raised:
                await http.send(hook(receiver.url))
    finally:
        await http.aclose()
    assert isinstance(raised.value, TimeoutError | TransientWebhookError)


async def test_a_dropped_or_refused_connection_is_transient(client: HTTPWebhookClient) -> None:
    async with serve(lambda n, r: Answer(drop=True)) as receiver:
        with pytest.raises(TransientWebhookError, match=r"RemoteProtocolError|ReadError"):
            await client.send(hook(receiver.url))
    # The receiver is gone now: nothing listens on its port.
    with pytest.raises(TransientWebhookError, match="ConnectError") as raised:
        await client.send(hook(receiver.url))
    assert raised.value.status is None


async def test_an_oversized_2xx_answer_is_refused() -> None:
    http = HTTPWebhookClient([SECRET], max_response_size=10)
    try:
        async with serve(lambda n, r: Answer(200, b"y" * 5000)) as receiver:
            with pytest.raises(PermanentWebhookError, match="over 10 bytes"):
                await http.send(hook(receiver.url))
            async with serve(lambda n, r: Answer(200, b"0123456789")) as exact:
                assert (await http.send(hook(exact.url))).body == b"0123456789"
    finally:
        await http.aclose()


def test_construction_is_checked() -> None:
    with pytest.raises(InvalidWebhookError, match="at least one"):
        HTTPWebhookClient([])
    with pytest.raises(InvalidWebhookError, match="whsec_"):
        HTTPWebhookClient(["v1,whsec_abc"])
    with pytest.raises(ValueError, match="must be positive"):
        HTTPWebhookClient([SECRET], timeout=0)


async def test_repr_names_no_secret() -> None:
    http = HTTPWebhookClient([SECRET, OTHER_SECRET], timeout=1.5)
    assert repr(http) == "<HTTPWebhookClient with 2 secret(s), timeout 1.5s>"
    assert SECRET[6:] not in repr(http)
    await http.aclose()


async def test_a_pool_delivers_everything_to_a_receiver_failing_one_in_five() -> None:
    """Retries bring every webhook through; every copy of one has the same id."""
    failing = {n for n in range(200) if n % 5 == 2}  # 20% of the requests, spread

    def script(n: int, request: Received) -> Answer:
        return Answer(503, b"flaky") if n in failing else Answer(200)

    http = HTTPWebhookClient([SECRET], timeout=5)
    pool = WorkerPool(workers=4, backoff=Backoff(base=0.01, cap=0.05, max_attempts=10))
    webhooks: list[Webhook] = []
    try:
        async with serve(script) as receiver:
            await pool.start()
            for _ in range(40):
                webhooks.append(hook(receiver.url, name="chaos"))
                await pool.submit(WebhookTask(webhooks[-1], http))
            accepted = await asyncio.to_thread(receiver.wait_accepted, 40)
            await pool.aclose()
    finally:
        await http.aclose()
    assert set(accepted) == {w.id for w in webhooks}
    assert all(r.verified for r in receiver.requests)
    assert len(receiver.requests) > 40  # some were retried...
    retried = [w.id for w in webhooks if sum(r.webhook_id == w.id for r in receiver.requests) > 1]
    assert retried  # ...under the id they had from the start

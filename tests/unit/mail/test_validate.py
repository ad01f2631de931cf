"""Validation: GoTrue's syntax rules, the extended checks, blocked MX, the service (fail-open).

DNS answers come from an in-memory resolver (a stand-in for the internet),
and the dnspython resolver is tested against a small DNS server on
127.0.0.1. The validation service is a real HTTP server in a thread.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from apitask import TaskCounters
from apitask.mail import (
    AddressReason,
    DNSResolver,
    InvalidAddressError,
    InvalidMessageError,
    Message,
    RecordingClient,
    Resolver,
    StaticResolver,
    ValidatingClient,
    ValidationService,
    check_address,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# ---------------------------------------------------------------- syntax (§1.8)


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("Ann.Smith+tag@Example.COM", "ann.smith+tag@example.com"),
        ("o'brien!#$%&*/=?^_`{|}~-@mail.example.org", "o'brien!#$%&*/=?^_`{|}~-@mail.example.org"),
        ("user@mycompany", "user@mycompany"),  # GoTrue: a dot is not required
        ("dev@localhost", "dev@localhost"),  # special-use names pass the syntax check
        ("Dev@Inbox.TEST", "dev@inbox.test"),
        ("zoë@exämple.com", "zoë@exämple.com"),  # international (SMTPUTF8)
        ("ann@xn--exmple-cua.com", "ann@exämple.com"),  # IDNA in, Unicode out
        ("user@123.example", "user@123.example"),
    ],
)
def test_syntax_accepts_and_lowercases(address: str, normalized: str) -> None:
    assert check_address(address) == normalized


@pytest.mark.parametrize(
    ("address", "reason", "message"),
    [
        ("", AddressReason.EMPTY, "An email address is required"),
        ("a" * 244 + "@example.com", AddressReason.TOO_LONG, "An email address is too long"),
        ("Ann <ann@example.com>", AddressReason.SYNTAX, "invalid format"),
        ('"ann smith"@example.com', AddressReason.SYNTAX, "invalid format"),
        ("ann@[127.0.0.1]", AddressReason.SYNTAX, "invalid format"),
        ("ann..smith@example.com", AddressReason.SYNTAX, "invalid format"),
        (".ann@example.com", AddressReason.SYNTAX, "invalid format"),
        ("ann@-example.com", AddressReason.SYNTAX, "invalid format"),
        ("ann@example-.com", AddressReason.SYNTAX, "invalid format"),
        ("ann@exa_mple.com", AddressReason.SYNTAX, "invalid format"),
        ("ann@under_score.local", AddressReason.SYNTAX, "invalid format"),
        ("ann@" + "a" * 64 + ".com", AddressReason.SYNTAX, "invalid format"),
        ("ann.example.com", AddressReason.SYNTAX, "invalid format"),
        ("ann@", AddressReason.SYNTAX, "invalid format"),
        ("@example.com", AddressReason.SYNTAX, "invalid format"),
        ("a b@example.com", AddressReason.SYNTAX, "invalid format"),
        # Matched whole: a final newline is not ignored (Go's "$" does not either).
        ("ann@example.com\n", AddressReason.SYNTAX, "invalid format"),
        # GoTrue's pattern accepts this; no mail can be written to it (not a dot-atom).
        ("ann.@example.com", AddressReason.SYNTAX, "invalid format"),
    ],
)
def test_syntax_refusals_carry_gotrue_codes_and_messages(
    address: str, reason: AddressReason, message: str
) -> None:
    with pytest.raises(InvalidAddressError, match=message) as raised:
        check_address(address)
    error = raised.value
    assert isinstance(error, InvalidMessageError)  # a MailError, and a ValueError
    assert (error.address, error.reason, error.error_code) == (
        address,
        reason,
        "validation_failed",
    )
    assert error.code is None  # no SMTP reply: nothing was sent
    if reason is AddressReason.SYNTAX:
        assert error.detail  # email-validator's explanation, for logs


def test_the_length_limit_counts_bytes_as_gotrue_does() -> None:
    fits = "a" * 60 + "@" + ".".join(["b" * 60] * 3) + ".cd"  # 247 bytes
    assert check_address(fits) == fits
    with pytest.raises(InvalidAddressError) as raised:
        check_address("é" * 60 + "@" + ".".join(["b" * 60] * 3))  # 243 characters, 303 bytes
    assert raised.value.reason is AddressReason.TOO_LONG


def test_every_reason_maps_to_a_gotrue_error_code() -> None:
    """Syntax refusals are 400 validation_failed; the rest 400 email_address_invalid."""
    syntax = {AddressReason.EMPTY, AddressReason.TOO_LONG, AddressReason.SYNTAX}
    for reason in AddressReason:
        expected = "validation_failed" if reason in syntax else "email_address_invalid"
        assert reason.error_code == expected


# ---------------------------------------------------------------- extended checks (§4.6)


class Lookups(StaticResolver):
    """A StaticResolver that lists the lookups made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    async def mx(self, domain: str) -> list[str]:
        self.asked.append(f"MX {domain}")
        return await super().mx(domain)

    async def addresses(self, domain: str) -> list[str]:
        self.asked.append(f"A {domain}")
        return await super().addresses(domain)


class Stalled:
    """A resolver that never answers."""

    async def mx(self, domain: str) -> list[str]:
        await asyncio.Event().wait()
        raise AssertionError  # pragma: no cover - never resumed

    async def addresses(self, domain: str) -> list[str]:  # pragma: no cover - not reached
        raise AssertionError


WORLD = Lookups(
    mx={
        "mail.example.net": ["mx1.mail.example.net.", "mx2.mail.example.net."],
        "spam.example.net": ["MX.Bad-Host.example."],
        "nomail.example.net": ["."],
        "flaky.example.net": ["mx.flaky.example.net"],
    },
    addresses={
        "bare.example.net": ["192.0.2.10", "2001:db8::10"],
        "dodgy.example.net": ["2001:DB8:0::66"],
    },
    failing=["unsure.example.net"],
)


def extended(resolver: Resolver = WORLD, **options: Any) -> ValidatingClient:
    return ValidatingClient(
        RecordingClient(),
        extended=True,
        resolver=resolver,
        blocked_mx=["mx.bad-host.example", "2001:db8::66", "198.51.100.7."],
        **options,
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("test@gmail.com", AddressReason.ADDRESS),
        ("Example@Gmail.com", AddressReason.ADDRESS),
        ("someone@gmail.com", AddressReason.ADDRESS),
        ("test@email.com", AddressReason.ADDRESS),
        ("abcde@gmail.com", AddressReason.ADDRESS),  # gmail names have 6+ characters
        ("ann@test", AddressReason.DNS),
        ("ann@localhost", AddressReason.DNS),
        ("ann@example.com", AddressReason.DNS),
        ("ann@example.org", AddressReason.DNS),
        ("ann@gamil.com", AddressReason.DNS),
        ("ann@anonymous.com", AddressReason.DNS),
        ("ann@inbox.test", AddressReason.DNS),
        ("ann@printer.local", AddressReason.DNS),
        ("ann@a.b.example", AddressReason.DNS),
        ("ann@host.invalid", AddressReason.DNS),
        ("ann@dev.localhost", AddressReason.DNS),
        ("ann@mycompany", AddressReason.DNS),  # a single label never receives mail
        ("ann@nowhere.example.net", AddressReason.DNS),  # no MX, no address
        ("ann@nomail.example.net", AddressReason.DNS),  # null MX (RFC 7505)
        ("ann@spam.example.net", AddressReason.MX),  # blocked MX, case and dot ignored
        ("ann@dodgy.example.net", AddressReason.MX),  # no MX, a blocked address
    ],
)
async def test_extended_refusals(address: str, reason: AddressReason) -> None:
    with pytest.raises(InvalidAddressError) as raised:
        await extended().validate(address)
    error = raised.value
    assert error.reason is reason
    assert error.error_code == "email_address_invalid"
    assert str(error) == f'Email address "{address.lower()}" is invalid'


@pytest.mark.parametrize(
    "address",
    [
        "ann@mail.example.net",  # MX hosts, none blocked
        "ann@bare.example.net",  # no MX, but addresses (RFC 5321 implicit MX)
        "ann@unsure.example.net",  # the lookup failed: not sure, so it passes
        "abcdef@gmail.com",
        "zoë@exämple.com",  # looked up as xn--exmple-cua.com
    ],
)
async def test_extended_passes(address: str) -> None:
    resolver = Lookups(
        mx={**WORLD._mx, "xn--exmple-cua.com": ["mx.example.net"]},
        addresses=WORLD._addresses,
        failing=["unsure.example.net"],
    )
    assert await extended(resolver).validate(address) == address.lower()


async def test_big_providers_skip_dns_and_static_refusals_skip_the_network() -> None:
    resolver = Lookups()  # knows no domain: any lookup would refuse
    client = extended(resolver)
    assert await client.validate("someone.else@outlook.com") == "someone.else@outlook.com"
    with pytest.raises(InvalidAddressError):
        await client.validate("ann@example.com")
    assert resolver.asked == []
    with pytest.raises(InvalidAddressError):
        await client.validate("ann@new.example.net")
    assert resolver.asked == ["MX new.example.net", "A new.example.net"]


class NoMXUnsureAddress:
    """No MX records; the address lookup then fails (a SERVFAIL, say)."""

    async def mx(self, domain: str) -> list[str]:
        return []

    async def addresses(self, domain: str) -> list[str]:
        raise LookupError("SERVFAIL")


async def test_an_address_lookup_failure_passes() -> None:
    client = extended(NoMXUnsureAddress())
    assert await client.validate("ann@half.example.net") == "ann@half.example.net"


async def test_a_stalled_lookup_passes_at_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "apitask.mail"):
        assert await extended(Stalled(), timeout=0.05).validate("a@slow.example.net")
    assert caplog.messages == ["mail: address checks did not finish within 0.05s: address accepted"]


async def test_without_extended_checks_only_the_syntax_counts() -> None:
    client = ValidatingClient(RecordingClient(), resolver=Lookups(), blocked_mx=["x"])
    assert await client.validate("Ann@Example.COM") == "ann@example.com"
    assert client.resolver.asked == []  # type: ignore[attr-defined]
    assert isinstance(ValidatingClient(RecordingClient()).resolver, DNSResolver)


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        ValidatingClient(RecordingClient(), timeout=0)
    with pytest.raises(TypeError, match="not one string"):
        ValidatingClient(RecordingClient(), blocked_mx="mx.example.net")
    with pytest.raises(ValueError, match="must be http"):
        ValidatingClient(RecordingClient(), service_url="ftp://example.net/check")
    with pytest.raises(ValueError, match="control character"):
        ValidationService("http://127.0.0.1/", headers={"X-Key": "a\r\nX-Evil: 1"})


# ---------------------------------------------------------------- send


async def test_send_refuses_before_handing_on_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    inner, counters = RecordingClient(), TaskCounters()
    client = ValidatingClient(inner, extended=True, resolver=WORLD, counters=counters)
    bad = Message(to="ann@nowhere.example.net", subject="s", text="t", type="signup")
    good = Message(to="ann@mail.example.net", subject="s", text="t", type="signup")
    with caplog.at_level(logging.INFO, "apitask.mail"), pytest.raises(InvalidAddressError):
        await client.send(bad)
    await client.send(good)
    assert inner.messages == [good]
    assert counters.snapshot() == {"signup": {"failed": 1}}
    assert caplog.messages == [
        "mail: signup mail to a recipient at nowhere.example.net refused: invalid_email_dns"
    ]


# ---------------------------------------------------------------- the validation service


class Service:
    """A validation service on 127.0.0.1: the path picks the answer."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                service.requests.append((self.path, headers, body))
                status, answer = service.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    def answer(self, path: str) -> tuple[int, bytes]:
        if path == "/stall":
            self.release.wait(10)
        return {
            "/valid": (200, b'{"valid": true}'),
            "/invalid": (200, b'{"valid": false, "reason": "disposable domain"}'),
            "/down": (503, b'{"valid": false}'),
            "/garbage": (200, b"<html>oops</html>"),
            "/other": (200, b'{"score": 0.1}'),
            "/list": (200, b"[false]"),
            "/huge": (200, b'{"valid": false, "pad": "' + b"x" * 5000 + b'"}'),
            "/stall": (200, b'{"valid": false}'),
        }[path]


@pytest.fixture
def service() -> Iterator[Service]:
    service = Service()
    service.thread.start()
    yield service
    service.release.set()
    service.server.shutdown()
    service.server.server_close()


async def test_the_service_gets_a_json_post_with_the_headers(service: Service) -> None:
    client = ValidatingClient(
        RecordingClient(),
        service_url=f"{service.url}/valid",
        service_headers={"apikey": "secret", "X-Env": ["first", "last"], "X-None": []},
    )
    assert await client.validate("Ann@Example.net") == "ann@example.net"
    [(path, headers, body)] = service.requests
    assert path == "/valid"
    assert json.loads(body) == {"email": "ann@example.net"}
    assert headers["content-type"] == "application/json"
    assert (headers["apikey"], headers["x-env"]) == ("secret", "last")
    assert "x-none" not in headers


async def test_only_a_clear_no_from_the_service_refuses(service: Service) -> None:
    client = ValidatingClient(RecordingClient(), service_url=f"{service.url}/invalid")
    with pytest.raises(InvalidAddressError) as raised:
        await client.validate("ann@example.net")
    assert raised.value.reason is AddressReason.ADDRESS
    assert raised.value.error_code == "email_address_invalid"


@pytest.mark.parametrize("path", ["/down", "/garbage", "/other", "/list", "/huge", "/missing"])
async def test_the_service_fails_open(
    service: Service, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = ValidatingClient(RecordingClient(), service_url=f"{service.url}{path}")
    with caplog.at_level(logging.WARNING, "apitask.mail"):
        assert await client.validate("ann@example.net") == "ann@example.net"
    if path in ("/other", "/list"):
        assert caplog.messages == []  # an answer, just not a "no"
    else:
        [line] = caplog.messages
        assert line.startswith(f"mail: e-mail validation service {service.url}{path} failed")


async def test_an_unreachable_service_fails_open() -> None:
    with socket_closed() as url:
        client = ValidatingClient(RecordingClient(), service_url=url)
        assert await client.validate("ann@example.net") == "ann@example.net"


async def test_a_stalled_service_fails_open_at_the_deadline(service: Service) -> None:
    client = ValidatingClient(RecordingClient(), service_url=f"{service.url}/stall", timeout=0.1)
    assert await client.validate("ann@example.net") == "ann@example.net"


async def test_the_first_refusal_wins_while_the_service_stalls(service: Service) -> None:
    """Host and service checks run concurrently: a DNS refusal does not wait for the service."""
    client = extended(service_url=f"{service.url}/stall", timeout=30)
    with pytest.raises(InvalidAddressError) as raised:
        await client.validate("ann@nowhere.example.net")
    assert raised.value.reason is AddressReason.DNS
    service.release.set()


async def test_static_refusals_do_not_ask_the_service(service: Service) -> None:
    client = extended(service_url=f"{service.url}/valid")
    with pytest.raises(InvalidAddressError):
        await client.validate("test@gmail.com")
    assert service.requests == []
    assert await client.validate("ann@mail.example.net") == "ann@mail.example.net"
    assert len(service.requests) == 1


class socket_closed:
    """A URL on 127.0.0.1 where nothing listens."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return f"http://127.0.0.1:{port}/check"

    def __exit__(self, *exc: object) -> None:
        pass


# ---------------------------------------------------------------- dnspython, a real DNS server


class DNSServer(asyncio.DatagramProtocol):
    """Answers UDP queries on 127.0.0.1 from a table; unknown names are NXDOMAIN."""

    def __init__(
        self, records: dict[tuple[str, str], list[str]], servfail: set[tuple[str, str]]
    ) -> None:
        self.records = records
        self.servfail = servfail
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True)
        kind = dns.rdatatype.to_text(question.rdtype)
        if (name, kind) in self.servfail or (name, "*") in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif (name, kind) in self.records:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", kind, self.records[name, kind])
            )
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        # else: the name exists without records of that type (NOERROR, no answer)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def dns_resolver() -> Any:
    records = {
        ("mail.example.net", "MX"): ["10 mx1.example.net.", "20 mx2.example.net."],
        ("nomail.example.net", "MX"): ["0 ."],
        ("bare.example.net", "A"): ["192.0.2.10"],
        ("v6.example.net", "AAAA"): ["2001:db8::10"],
        ("half.example.net", "A"): ["192.0.2.11"],
    }
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DNSServer(records, {("broken.example.net", "*"), ("half.example.net", "AAAA")}),
        local_addr=("127.0.0.1", 0),
    )
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = transport.get_extra_info("sockname")[1]
    resolver.lifetime = 2.0
    yield DNSResolver(resolver)
    transport.close()


async def test_dnspython_resolver_answers_and_not_found(dns_resolver: DNSResolver) -> None:
    assert isinstance(dns_resolver, Resolver)
    assert sorted(await dns_resolver.mx("mail.example.net")) == [
        "mx1.example.net.",
        "mx2.example.net.",
    ]
    assert await dns_resolver.mx("nomail.example.net") == ["."]
    assert await dns_resolver.mx("nowhere.example.net") == []  # NXDOMAIN
    assert await dns_resolver.mx("bare.example.net") == []  # exists, no MX
    assert await dns_resolver.addresses("bare.example.net") == ["192.0.2.10"]
    assert await dns_resolver.addresses("v6.example.net") == ["2001:db8::10"]
    assert await dns_resolver.addresses("nowhere.example.net") == []
    # AAAA fails, but A answered: the answer is definite enough.
    assert await dns_resolver.addresses("half.example.net") == ["192.0.2.11"]


async def test_dnspython_resolver_failures_raise(dns_resolver: DNSResolver) -> None:
    with pytest.raises(dns.resolver.NoNameservers):
        await dns_resolver.mx("broken.example.net")
    with pytest.raises(dns.resolver.NoNameservers):
        await dns_resolver.addresses("broken.example.net")


async def test_validating_with_dnspython_end_to_end(dns_resolver: DNSResolver) -> None:
    client = ValidatingClient(
        RecordingClient(), extended=True, resolver=dns_resolver, blocked_mx=["mx2.example.net"]
    )
    with pytest.raises(InvalidAddressError) as raised:
        await client.validate("ann@mail.example.net")
    assert raised.value.reason is AddressReason.MX
    with pytest.raises(InvalidAddressError) as raised:
        await client.validate("ann@nomail.example.net")
    assert raised.value.reason is AddressReason.DNS
    assert await client.validate("ann@bare.example.net") == "ann@bare.example.net"
    assert await client.validate("ann@broken.example.net") == "ann@broken.example.net"


async def test_the_default_dnspython_resolver_reads_the_system_configuration() -> None:
    resolver = await DNSResolver()._get()
    assert isinstance(resolver, dns.asyncresolver.Resolver)
    assert resolver.nameservers  # from /etc/resolv.conf, read in a thread

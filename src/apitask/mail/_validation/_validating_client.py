"""The validating client: refuse bad addresses before a mail is handed on.

GoTrue's ``validateclient`` (§4.6), in front of whatever
sends: the syntax check always, then, when configured, the extended checks
(static rules, then the domain's DNS) and the remote validation service,
concurrently, under one deadline. A refusal raises
:class:`InvalidAddressError` in the caller, before the mail is queued, so the
request fails rather than a worker later. Anything the network cannot
settle (timeouts, server failures, a service that is down) lets the
address pass.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..._counters import Outcome, TaskCounters
from .._task import log_fields, mail_counters
from ._address import (
    AddressReason,
    InvalidAddressError,
    ParsedAddress,
    check_static,
    normalize_host,
    parse_address,
)
from ._resolver import DNSResolver
from ._service import ValidationService

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterable, Mapping, Sequence

    from .._client import MailClient
    from .._message import Message
    from ._resolver import Resolver

__all__ = ["ValidatingClient"]

logger = logging.getLogger("apitask.mail")

# The largest public providers: GoTrue skips their DNS lookup entirely.
_PROVIDERS = frozenset(
    {
        *("gmail.com", "yahoo.com", "hotmail.com", "aol.com", "outlook.com", "comcast.net"),
        *("icloud.com", "msn.com", "hotmail.co.uk", "sbcglobal.net", "live.com", "yahoo.co.in"),
        *("me.com", "att.net", "mail.ru", "bellsouth.net", "rediffmail.com", "cox.net"),
        *("yahoo.co.uk", "verizon.net"),
    }
)


class ValidatingClient:
    """Check the recipient of every mail, then hand the mail to ``client``.

    Args:
        client: the next client (a background client, an SMTP client...).
        extended: run GoTrue's extended checks
            (``GOTRUE_MAILER_EMAIL_VALIDATION_EXTENDED``): placeholder
            addresses and reserved hosts, then the domain must have MX
            records, or else addresses, and none of them blocked.
        blocked_mx: host names or IP addresses
            (``GOTRUE_MAILER_EMAIL_VALIDATION_BLOCKED_MX``, already parsed
            from its JSON array); a domain whose MX hosts (or, without MX,
            addresses) include one is refused. Compared case-insensitively,
            with or without the final dot. Used by the extended checks.
        resolver: where DNS answers come from (default: a :class:`DNSResolver`).
        service_url: the validation service
            (``GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_URL``); ``None``: not asked.
        service_headers: headers sent to it
            (``GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_HEADERS``).
        timeout: seconds for the network checks together (GoTrue: 3); when
            it passes, the address passes.
        counters: where refused mails are counted (``FAILED``, by mail type).
    """

    __slots__ = ("blocked_mx", "client", "counters", "extended", "resolver", "service", "timeout")

    def __init__(
        self,
        client: MailClient,
        *,
        extended: bool = False,
        blocked_mx: Iterable[str] = (),
        resolver: Resolver | None = None,
        service_url: str | None = None,
        service_headers: Mapping[str, str | Sequence[str]] | None = None,
        timeout: float = 3.0,
        counters: TaskCounters = mail_counters,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if isinstance(blocked_mx, str):
            raise TypeError("blocked_mx must be a collection of host names, not one string")
        self.client = client
        self.extended = extended
        self.blocked_mx = frozenset(normalize_host(host) for host in blocked_mx)
        self.resolver = resolver if resolver is not None else DNSResolver()
        self.service = (
            ValidationService(service_url, headers=service_headers, timeout=timeout)
            if service_url
            else None
        )
        self.timeout = timeout
        self.counters = counters

    async def send(self, message: Message) -> None:
        """Validate ``message.to``, then hand the message on.

        Raises:
            InvalidAddressError: the recipient was refused; nothing was sent.
        """
        try:
            await self.validate(message.to)
        except InvalidAddressError as exc:
            self.counters.add(message.type, Outcome.FAILED)
            logger.info(
                "mail: %s mail to a recipient at %s refused: %s",
                message.type,
                message.domain,
                exc.reason.value,
                extra=log_fields(message, reason=exc.reason.value),
            )
            raise
        await self.client.send(message)

    async def validate(self, address: str) -> str:
        """Run every configured check on ``address`` and return it lowercased.

        For the service to call before it stores a user, with the same rules
        the mails get.

        Raises:
            InvalidAddressError: refused; ``reason`` and ``error_code`` say why.
        """
        parsed = parse_address(address)
        checks: list[Coroutine[None, None, None]] = []
        if self.extended:
            check_static(parsed)
            checks.append(self._check_host(parsed))
        if self.service is not None:
            checks.append(_check_service(self.service, parsed))
        if checks:
            await self._first_refusal(checks, parsed.normalized)
        return parsed.normalized

    async def _first_refusal(self, checks: list[Coroutine[None, None, None]], address: str) -> None:
        # GoTrue runs the host and service checks concurrently: the first
        # refusal wins, and a deadline bounds both.
        running = [asyncio.ensure_future(check) for check in checks]
        try:
            async with asyncio.timeout(self.timeout):
                for next_done in asyncio.as_completed(running):
                    await next_done
        except TimeoutError:
            logger.warning(
                "mail: address checks did not finish within %ss: address accepted",
                self.timeout,
                extra={"action": "mail"},
            )
        finally:
            for check in running:
                check.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _check_host(self, parsed: ParsedAddress) -> None:
        address, host = parsed.normalized, parsed.ascii_domain
        if "." not in host:  # no mail domain is a single label
            raise InvalidAddressError(address, AddressReason.DNS, f"{host} is a single label")
        if host in _PROVIDERS:
            return
        try:
            exchanges = await self.resolver.mx(host)
        except Exception as exc:
            _unsure("MX", host, exc)
            return
        if exchanges:
            names = {normalize_host(name) for name in exchanges}
            if "" in names:  # RFC 7505 null MX: "this domain accepts no mail"
                raise InvalidAddressError(address, AddressReason.DNS, f"{host} has a null MX")
            self._refuse_blocked(address, host, names)
            return
        # No MX: RFC 5321 delivers to the domain's own addresses.
        try:
            addresses = await self.resolver.addresses(host)
        except Exception as exc:
            _unsure("address", host, exc)
            return
        if not addresses:
            raise InvalidAddressError(address, AddressReason.DNS, f"{host} has no MX or address")
        self._refuse_blocked(address, host, {normalize_host(ip) for ip in addresses})

    def _refuse_blocked(self, address: str, host: str, names: set[str]) -> None:
        blocked = names & self.blocked_mx
        if blocked:
            raise InvalidAddressError(
                address, AddressReason.MX, f"{host} is served by blocked {sorted(blocked)}"
            )


async def _check_service(service: ValidationService, parsed: ParsedAddress) -> None:
    if not await service.is_valid(parsed.normalized):
        raise InvalidAddressError(
            parsed.normalized, AddressReason.ADDRESS, "refused by the validation service"
        )


def _unsure(what: str, host: str, exc: Exception) -> None:
    logger.debug(
        "mail: %s lookup of %s failed (%s): address accepted",
        what,
        host,
        exc,
        extra={"action": "mail"},
    )

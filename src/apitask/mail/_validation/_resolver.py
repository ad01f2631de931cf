"""DNS behind a small interface: the validating client's only view of the network."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    import dns.asyncresolver

__all__ = ["DNSResolver", "Resolver", "StaticResolver"]


@runtime_checkable
class Resolver(Protocol):
    """Looks up what the validating client needs to know about a mail domain.

    Both methods take an ASCII (IDNA) domain name. An empty list is a
    *definite* answer: the name does not exist, or has no such records.
    Anything uncertain (a timeout, a server failure) must raise: the
    validating client then lets the address pass, as GoTrue does.
    """

    async def mx(self, domain: str) -> list[str]:
        """The host names of the domain's MX records (``"."`` for a null MX)."""

    async def addresses(self, domain: str) -> list[str]:
        """The domain's IPv4 and IPv6 addresses (A and AAAA records)."""


class StaticResolver:
    """A resolver that answers from tables: for tests and offline development.

    A domain in neither table does not exist; one in ``failing`` raises
    :class:`LookupError`, as a resolver does when it cannot tell.
    """

    __slots__ = ("_addresses", "_failing", "_mx")

    def __init__(
        self,
        mx: Mapping[str, Sequence[str]] | None = None,
        addresses: Mapping[str, Sequence[str]] | None = None,
        *,
        failing: Iterable[str] = (),
    ) -> None:
        self._mx = {domain.lower(): list(hosts) for domain, hosts in (mx or {}).items()}
        self._addresses = {domain.lower(): list(ips) for domain, ips in (addresses or {}).items()}
        self._failing = frozenset(domain.lower() for domain in failing)

    def _answer(self, table: dict[str, list[str]], domain: str) -> list[str]:
        domain = domain.lower()
        if domain in self._failing:
            raise LookupError(f"lookup of {domain} failed (StaticResolver: failing)")
        return list(table.get(domain, ()))

    async def mx(self, domain: str) -> list[str]:
        """The MX hosts listed for ``domain``."""
        return self._answer(self._mx, domain)

    async def addresses(self, domain: str) -> list[str]:
        """The addresses listed for ``domain``."""
        return self._answer(self._addresses, domain)


class DNSResolver:
    """A :class:`Resolver` on dnspython's asyncio resolver (the ``mail`` extra).

    Names are looked up as absolute names (no search domains, as GoTrue
    does). NXDOMAIN and "no answer" are definite; every other failure
    (timeout, SERVFAIL from every server) propagates, so the check passes.

    Args:
        resolver: a configured ``dns.asyncresolver.Resolver``. By default
            one is built from the system configuration (``/etc/resolv.conf``)
            on first use, in a thread: reading that file must not block the
            event loop.
    """

    __slots__ = ("_resolver",)

    def __init__(self, resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self._resolver = resolver

    async def _get(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            import dns.asyncresolver

            self._resolver = await asyncio.to_thread(dns.asyncresolver.Resolver)
        return self._resolver

    async def _records(self, domain: str, rdtype: str) -> list[str]:
        import dns.resolver

        resolver = await self._get()
        try:
            answer = await resolver.resolve(domain, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        if rdtype == "MX":
            return [record.exchange.to_text() for record in answer]
        return [record.to_text() for record in answer]

    async def mx(self, domain: str) -> list[str]:
        """The exchanges of the domain's MX records, as absolute names."""
        return await self._records(domain, "MX")

    async def addresses(self, domain: str) -> list[str]:
        """A and AAAA records, looked up concurrently.

        Definite when both answers are; a failure of either propagates
        unless the other found addresses.
        """
        answers = await asyncio.gather(
            self._records(domain, "A"), self._records(domain, "AAAA"), return_exceptions=True
        )
        found = [ip for answer in answers if isinstance(answer, list) for ip in answer]
        if found:
            return found
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return []

"""Where a custom template comes from (a file or an http(s) URL), and reading it.

Reading never blocks the event loop: files and URLs are read in a worker
thread (the stdlib's ``urllib``; the ``mail`` extra adds no HTTP client),
under a size limit and a deadline.
"""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ._gotemplate import TemplateError

__all__ = ["TemplateSource"]


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """A custom template's location: ``kind`` is ``"file"`` or ``"url"``.

    Build one with :meth:`parse` from a ``GOTRUE_MAILER_TEMPLATES_*`` value,
    or directly (``TemplateSource("file", "/etc/mail/invite.html")``).
    """

    kind: Literal["file", "url"]
    location: str

    @classmethod
    def parse(cls, value: str | os.PathLike[str], *, site_url: str = "") -> TemplateSource:
        """Read a template location the way GoTrue does, plus local files.

        * ``http://…`` and ``https://…`` are URLs;
        * ``file:…``, an :class:`os.PathLike`, or a path starting with
          ``/``, ``./`` or ``../`` is a file;
        * anything else is a path on ``site_url`` (GoTrue appends it there).

        Raises:
            ValueError: the value is empty, or relative with no ``site_url``.
        """
        if isinstance(value, os.PathLike):
            return cls("file", os.fspath(value))
        if not value:
            raise ValueError("a template location cannot be empty")
        scheme = urlsplit(value).scheme.lower()
        if scheme in ("http", "https"):
            return cls("url", value)
        if scheme == "file":
            return cls("file", urllib.request.url2pathname(urlsplit(value).path))
        if value.startswith(("/", "./", "../")):
            return cls("file", value)
        if not site_url:
            raise ValueError(f"template location {value!r} is relative and no site_url is set")
        return cls("url", site_url.rstrip("/") + "/" + value)

    async def read(self, *, name: str, max_size: int, timeout: float) -> str:
        """Return the template text.

        Raises:
            TemplateError: it cannot be read within ``timeout`` seconds, is
                larger than ``max_size`` bytes, is not UTF-8, or (a URL) did
                not answer 200.
        """
        try:
            async with asyncio.timeout(timeout):
                data = await asyncio.to_thread(self._read_blocking, name, max_size, timeout)
        except TimeoutError:
            raise TemplateError(
                f"{self.location} took longer than {timeout:g}s", template=name
            ) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TemplateError(f"{self.location} is not UTF-8: {exc}", template=name) from None

    def _read_blocking(self, name: str, max_size: int, timeout: float) -> bytes:
        try:
            if self.kind == "file":
                with open(self.location, "rb") as file:
                    data = file.read(max_size + 1)
            else:
                request = urllib.request.Request(self.location, headers={"User-Agent": "apitask"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    if response.status != 200:
                        raise TemplateError(
                            f"{self.location} answered {response.status}, not 200", template=name
                        )
                    data = response.read(max_size + 1)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response open
            raise TemplateError(
                f"{self.location} answered {exc.code}, not 200", template=name
            ) from None
        except OSError as exc:  # URLError, socket timeouts, missing files
            raise TemplateError(f"cannot read {self.location}: {exc}", template=name) from None
        if len(data) > max_size:
            # A truncated template would render a broken mail: refuse it.
            raise TemplateError(
                f"{self.location} is larger than the limit of {max_size} bytes", template=name
            )
        return data

"""An in-process ESMTP server that offers PIPELINING and CHUNKING (RFC 3030), scripted per test.

aiosmtpd has no BDAT and Postfix cannot be told to fail any one step, so
this small server (asyncio streams on a free port of 127.0.0.1: a real TCP
server) speaks EHLO, MAIL, RCPT, BDAT, DATA, RSET, NOOP and QUIT, and a test
scripts what it does at the next MAIL, RCPT, BDAT or DATA: a reply line,
:data:`DROP` (close without a reply) or, for BDAT, :data:`DROP_MID_CHUNK`
(read half the chunk, then close) or :data:`STALL` (read the chunk, never
reply).

With ``hold=True`` (the default) the replies to MAIL and RCPT are held until
the server answers BDAT LAST, DATA or any other command, as a pipelining
server may (RFC 2920): a client that waits for MAIL's reply before it sends
the rest gets none, so a send that succeeds proves MAIL, RCPT and BDAT went
out without a wait. The server reads a BDAT's chunk whatever it replies, as
RFC 3030 asks.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field

DROP = "DROP"
DROP_MID_CHUNK = "DROP_MID_CHUNK"
STALL = "STALL"

_BDAT = re.compile(rb"BDAT (\d+)( LAST)?\r\n", re.IGNORECASE)


@dataclass
class ChunkingServer:
    """The server and what it saw."""

    chunking: bool = True
    hold: bool = True
    commands: list[str] = field(default_factory=list)
    """Every command's verb, in order, over every connection."""
    chunks: list[bytes] = field(default_factory=list)
    """Every BDAT chunk as it came, refused or not."""
    data: list[bytes] = field(default_factory=list)
    """Every DATA content as it came (dot-stuffed, with the ending dot)."""
    messages: list[bytes] = field(default_factory=list)
    """The accepted messages (dot-stuffing undone)."""
    connections: int = 0
    scripts: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, verb: str, *actions: str) -> None:
        """Queue what the server does at the next ``verb`` (MAIL, RCPT, BDAT, DATA)."""
        self.scripts[verb].extend(actions)

    async def start(self) -> ChunkingServer:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._closing.set()  # ends every STALL
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await _Session(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


class _Session:
    def __init__(
        self, server: ChunkingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.held: list[bytes] = []
        self.mail = False
        self.recipients = 0

    def reply(self, line: str, *, flush: bool = True) -> None:
        self.held.append(line.encode() + b"\r\n")
        if flush or not self.server.hold or line.startswith("421"):  # 421: closing now
            self.writer.write(b"".join(self.held))
            self.held.clear()

    def reset(self) -> None:
        self.mail, self.recipients = False, 0

    async def run(self) -> None:
        self.reply("220 chunking.test ESMTP")
        while line := await self.reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper().decode()
            self.server.commands.append(verb)
            script = self.server.scripts[verb]
            action = script.popleft() if script else None
            if action == DROP:
                return
            if not await self.command(verb, line, action):
                return

    async def command(self, verb: str, line: bytes, action: str | None) -> bool:
        """Answer one command; ``False`` ends the session."""
        if verb == "EHLO":
            keywords = ["PIPELINING", "SIZE 1000000", "8BITMIME", "SMTPUTF8"]
            keywords += ["CHUNKING"] if self.server.chunking else []
            lines = ["chunking.test", *keywords]
            for keyword in lines[:-1]:
                self.reply(f"250-{keyword}")
            self.reply(f"250 {lines[-1]}")
        elif verb == "MAIL":
            self.mail = action is None
            self.reply(action or "250 2.1.0 Ok", flush=False)
        elif verb == "RCPT":
            accepted = action is None and self.mail
            self.recipients += accepted
            self.reply(
                action or ("250 2.1.5 Ok" if self.mail else "503 5.5.1 no MAIL"), flush=False
            )
        elif verb == "BDAT":
            return await self.bdat(line, action)
        elif verb == "DATA":
            return await self.data_command(action)
        elif verb == "RSET":
            self.reset()
            self.reply("250 2.0.0 Ok")
        elif verb == "QUIT":
            self.reply("221 2.0.0 Bye")
            return False
        else:
            self.reply("500 5.5.2 unknown command")
        return not (action or "").startswith("421")

    async def bdat(self, line: bytes, action: str | None) -> bool:
        match = _BDAT.fullmatch(line)
        assert match is not None, line  # the client under test sends one whole chunk
        size, last = int(match[1]), match[2] is not None
        if action == DROP_MID_CHUNK:
            await self.reader.readexactly(size // 2)
            return False
        chunk = await self.reader.readexactly(size)  # read whatever the reply (RFC 3030)
        self.server.chunks.append(chunk)
        if action == STALL:
            await self.server._closing.wait()
            return False
        if action is None and self.mail and self.recipients and last:
            self.server.messages.append(chunk)
        if action is None:
            action = (
                "250 2.0.0 Ok: queued"
                if self.mail and self.recipients
                else "554 5.5.1 no valid recipients"
            )
        self.reply(action)
        self.reset()
        return not action.startswith("421")

    async def data_command(self, action: str | None) -> bool:
        if not (self.mail and self.recipients):
            self.reply("554 5.5.1 no valid recipients")
            return True
        self.reply("354 go ahead")
        content = bytearray()
        while (line := await self.reader.readline()) != b".\r\n":
            if not line:
                return False
            content += line
        self.server.data.append(bytes(content) + b".\r\n")
        if action is None:
            self.server.messages.append(re.sub(rb"(?m)^\.", b"", bytes(content)))
        self.reply(action or "250 2.0.0 Ok: queued")
        self.reset()
        return not (action or "").startswith("421")


async def start_chunking_server(*, chunking: bool = True, hold: bool = True) -> ChunkingServer:
    """Start a :class:`ChunkingServer` on a free port of 127.0.0.1."""
    return await ChunkingServer(chunking=chunking, hold=hold).start()

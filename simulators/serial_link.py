"""A software null-modem cable: two pseudo-terminals joined by an asyncio relay.

``PtyLink`` opens two pty pairs; whatever a program writes to one slave device (``a_path``) can
be read from the other (``b_path``) and back, like two serial ports joined by a crossed cable.
A Modbus RTU server opens one end and a client the other, with real serial framing and no
hardware. Baud rate, parity and timing are not emulated (a pty delivers bytes at once).

Behaviour of a real line that is kept: bytes are never reordered, and bytes sent while nobody
reads the other end are not kept forever (beyond ``buffer_limit`` pending bytes per direction
the oldest are dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

_READ_SIZE = 4096


@dataclass
class _Direction:
    """One way of the relay: bytes read from master ``src`` are written to master ``dst``."""

    src: int
    dst: int
    pending: bytearray = field(default_factory=bytearray)
    relayed: int = 0  # bytes written to ``dst``
    dropped: int = 0  # bytes discarded because ``pending`` was over the limit
    writing: bool = False  # a writer callback is registered on ``dst``


class PtyLink:
    """Two pty pairs relayed master to master: ``a_path`` <-> ``b_path``.

    Lifecycle: ``await start()`` opens the ptys (slaves in raw mode) and starts relaying on the
    running loop; ``a_path`` and ``b_path`` are valid from then on. ``await stop()`` removes the
    loop callbacks and closes every fd (programs still holding a slave device then see a
    hang-up); it is idempotent. ``async with PtyLink() as link:`` does both.

    The link keeps its own slave fds open while running, so a program may open, close and
    reopen either device without the relay seeing EIO. Counters: ``a_to_b`` / ``b_to_a``
    (bytes relayed each way), ``dropped`` (bytes discarded, both ways). Single event loop only.
    """

    def __init__(self, buffer_limit: int = 65536) -> None:
        if buffer_limit < 1:
            raise ValueError("buffer_limit must be >= 1")
        self.buffer_limit = buffer_limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fds: list[int] = []
        self._paths: tuple[str, str] | None = None
        self._ab: _Direction | None = None
        self._ba: _Direction | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Open both pty pairs and start relaying; ``RuntimeError`` if already started."""
        if self._loop is not None:
            raise RuntimeError("PtyLink already started")
        try:
            master_a, slave_a = self._open_pair()
            master_b, slave_b = self._open_pair()
            self._paths = (os.ttyname(slave_a), os.ttyname(slave_b))
        except OSError:
            self._close_fds()
            raise
        self._loop = asyncio.get_running_loop()
        self._ab = _Direction(master_a, master_b)
        self._ba = _Direction(master_b, master_a)
        for d in (self._ab, self._ba):
            self._loop.add_reader(d.src, self._on_readable, d)

    async def stop(self) -> None:
        """Stop relaying and close every fd. Pending bytes are discarded."""
        loop = self._loop
        if loop is not None:
            for d in (self._ab, self._ba):
                if d is not None:
                    loop.remove_reader(d.src)
                    if d.writing:
                        loop.remove_writer(d.dst)
                        d.writing = False
        self._loop = None
        self._close_fds()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- public state ------------------------------------------------------------------
    @property
    def a_path(self) -> str:
        """Device path of end A (e.g. ``/dev/pts/7``); ``RuntimeError`` before ``start()``."""
        return self._started_paths()[0]

    @property
    def b_path(self) -> str:
        """Device path of end B; ``RuntimeError`` before ``start()``."""
        return self._started_paths()[1]

    @property
    def a_to_b(self) -> int:
        """Bytes written by the program on A and delivered towards B."""
        return self._ab.relayed if self._ab else 0

    @property
    def b_to_a(self) -> int:
        """Bytes written by the program on B and delivered towards A."""
        return self._ba.relayed if self._ba else 0

    @property
    def dropped(self) -> int:
        """Bytes discarded (both ways) because the receiving end did not read them."""
        return sum(d.dropped for d in (self._ab, self._ba) if d is not None)

    # -- internals ---------------------------------------------------------------------
    def _started_paths(self) -> tuple[str, str]:
        if self._paths is None:
            raise RuntimeError("PtyLink not started")
        return self._paths

    def _open_pair(self) -> tuple[int, int]:
        master, slave = os.openpty()
        self._fds += [master, slave]
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
        os.set_blocking(master, False)
        return master, slave

    def _close_fds(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def _on_readable(self, d: _Direction) -> None:
        try:
            data = os.read(d.src, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""  # EIO: every slave fd of this pty is closed
        if not data:  # EOF or EIO: stop reading, or the loop would spin on a dead fd
            if self._loop is not None:
                self._loop.remove_reader(d.src)
            return
        d.pending += data
        excess = len(d.pending) - self.buffer_limit
        if excess > 0:
            del d.pending[:excess]
            d.dropped += excess
        self._flush(d)

    def _flush(self, d: _Direction) -> None:
        """Write as much of ``d.pending`` as ``d.dst`` takes; wait for writability if not all."""
        while d.pending:
            try:
                n = os.write(d.dst, d.pending)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                d.dropped += len(d.pending)  # the other pty is gone: the bytes are lost
                d.pending.clear()
                break
            d.relayed += n
            del d.pending[:n]
        loop = self._loop
        if loop is None:
            return
        if d.pending and not d.writing:
            loop.add_writer(d.dst, self._flush, d)
            d.writing = True
        elif not d.pending and d.writing:
            loop.remove_writer(d.dst)
            d.writing = False

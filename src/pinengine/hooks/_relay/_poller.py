"""Readiness for the relay's loop: edge-triggered epoll where there is one, else level-triggered ``selectors``.

Under epoll every socket is registered once for reading and writing,
edge-triggered: the loop reads until a short read or ``EAGAIN`` and writes
until ``EAGAIN``, keeps what it learnt in flags, and never changes a
registration (no ``epoll_ctl`` per message). The ``selectors`` fallback
(macOS, BSD, Windows) is level-triggered, so there the loop registers each
socket for what it is waiting on (``set_mask``).
"""

from __future__ import annotations

import select
import selectors
from typing import Any, Callable

__all__ = ["Poller"]

Handler = Callable[[int], None]


class Poller:
    """``register(sock, handler)``; ``poll(timeout)`` -> ``(fd, events)`` pairs; ``handlers[fd]``.

    ``IN``, ``OUT`` and ``BROKEN`` (error, hang-up, peer shut down its
    writing) are the event bits handlers see. ``edge`` tells the loop which
    kind it has. (The loop looks the handlers up itself: one Python frame
    less per event than a wrapper that pairs them.)
    """

    def __init__(self) -> None:
        self.handlers: dict[int, Handler] = {}
        self._handlers = self.handlers
        self._masks: dict[int, int] = {}
        epoll = getattr(select, "epoll", None)
        self._epoll: Any = None
        self._sel: selectors.BaseSelector | None = None
        if epoll is not None:
            self._epoll = epoll()
            self.edge = True
            self.IN, self.OUT = select.EPOLLIN, select.EPOLLOUT
            self.BROKEN = select.EPOLLERR | select.EPOLLHUP | getattr(select, "EPOLLRDHUP", 0)
            self._all = self.IN | self.OUT | self.BROKEN | select.EPOLLET
        else:
            self._sel = selectors.DefaultSelector()
            self.edge = False
            self.IN, self.OUT, self.BROKEN = selectors.EVENT_READ, selectors.EVENT_WRITE, 0
            self._all = 0

    def register(self, sock: Any, handler: Handler, mask: int | None = None) -> None:
        """Watch ``sock``: for everything (edge-triggered), or for ``mask`` (level-triggered; 0 = nothing yet)."""
        fd = sock.fileno()
        self._handlers[fd] = handler
        if self._epoll is not None:
            self._epoll.register(fd, self._all)
            return
        self._masks[fd] = 0
        self.set_mask(sock, self.IN if mask is None else mask)

    def set_handler(self, sock: Any, handler: Handler) -> None:
        self._handlers[sock.fileno()] = handler

    def set_mask(self, sock: Any, mask: int) -> None:
        """Level-triggered only: what ``sock`` waits for now (a no-op under epoll)."""
        if self._sel is None:
            return
        fd = sock.fileno()
        old = self._masks.get(fd)
        if old is None or old == mask:
            return
        self._masks[fd] = mask
        if not old:
            self._sel.register(fd, mask)
        elif not mask:
            self._sel.unregister(fd)
        else:
            self._sel.modify(fd, mask)

    def unregister(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd < 0 or self._handlers.pop(fd, None) is None:
            return
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            elif self._masks.pop(fd, 0) and self._sel is not None:
                self._sel.unregister(fd)
        except (KeyError, OSError, ValueError):
            pass

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if self._epoll is not None:
            events: list[tuple[int, int]] = self._epoll.poll(-1 if timeout is None else timeout)
            return events
        assert self._sel is not None
        return [(key.fd, ev) for key, ev in self._sel.select(timeout)]

    def close(self) -> None:
        self._handlers.clear()
        self._masks.clear()
        try:
            if self._epoll is not None:
                self._epoll.close()
            elif self._sel is not None:
                self._sel.close()
        except (OSError, ValueError, RuntimeError):
            pass

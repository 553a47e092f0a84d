"""Readiness for the relay's loop: edge-triggered epoll where there is one, else level-triggered ``selectors``.

Each socket is registered for what it waits on (``IN``, ``OUT``, both or
neither; hang-ups and errors always show as ``BROKEN`` where the system
reports them). Under epoll the registration is edge-triggered: the loop
reads until a short read or ``EAGAIN``, and a socket stays registered for
``IN`` without a change per message. ``OUT`` is asked for only while a send
is blocked: a unix socket reports room to write every time its reader takes
data, which would wake the loop once more per message for nothing. The
``selectors`` fallback (macOS, BSD, Windows) is level-triggered: there a
socket must not wait for ``IN`` while its data cannot be moved on.
"""

from __future__ import annotations

import select
import selectors
from typing import Any, Callable

__all__ = ["Poller"]

Handler = Callable[[int], None]


class Poller:
    """``register(sock, handler, mask)``, ``set_mask``; ``poll(timeout)`` -> ``(fd, events)``; ``handlers[fd]``.

    ``edge`` tells the loop which kind it has. (The loop looks the handlers
    up itself: one Python frame less per event than a wrapper that pairs them.)
    """

    def __init__(self) -> None:
        self.handlers: dict[int, Handler] = {}
        self._masks: dict[int, int] = {}
        epoll = getattr(select, "epoll", None)
        self._epoll: Any = None
        self._sel: selectors.BaseSelector | None = None
        if epoll is not None:
            self._epoll = epoll()
            self.edge = True
            self.IN, self.OUT = select.EPOLLIN, select.EPOLLOUT
            self.BROKEN = select.EPOLLERR | select.EPOLLHUP | getattr(select, "EPOLLRDHUP", 0)
            self._always = select.EPOLLET | getattr(select, "EPOLLRDHUP", 0)
        else:
            self._sel = selectors.DefaultSelector()
            self.edge = False
            self.IN, self.OUT, self.BROKEN = selectors.EVENT_READ, selectors.EVENT_WRITE, 0
            self._always = 0

    def register(self, sock: Any, handler: Handler, mask: int) -> None:
        """Watch ``sock`` for ``mask`` (0: only for hang-ups, where the system reports them)."""
        fd = sock.fileno()
        self.handlers[fd] = handler
        self._masks[fd] = mask
        if self._epoll is not None:
            self._epoll.register(fd, mask | self._always)
        elif mask:
            assert self._sel is not None
            self._sel.register(fd, mask)

    def set_handler(self, sock: Any, handler: Handler) -> None:
        self.handlers[sock.fileno()] = handler

    def set_mask(self, sock: Any, mask: int) -> None:
        """What ``sock`` waits for now."""
        fd = sock.fileno()
        old = self._masks.get(fd)
        if old is None or old == mask:
            return
        self._masks[fd] = mask
        if self._epoll is not None:
            self._epoll.modify(fd, mask | self._always)
            return
        assert self._sel is not None
        if not old:
            self._sel.register(fd, mask)
        elif not mask:
            self._sel.unregister(fd)
        else:
            self._sel.modify(fd, mask)

    def unregister(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd < 0 or self.handlers.pop(fd, None) is None:
            return
        mask = self._masks.pop(fd, 0)
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            elif mask and self._sel is not None:
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
        self.handlers.clear()
        self._masks.clear()
        try:
            if self._epoll is not None:
                self._epoll.close()
            elif self._sel is not None:
                self._sel.close()
        except (OSError, ValueError, RuntimeError):
            pass

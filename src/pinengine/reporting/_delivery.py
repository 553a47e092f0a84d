"""The HTTP sink's delivery: a bounded queue per destination, sender threads, retries with backoff.

Each destination has at most one attempt in flight; the operator's
destinations are served first and server-chosen ones hold at most all
sender threads but one, so a slow or hung destination delays only its own
reports. Threads start when there is work and end after ``_IDLE_EXIT``
seconds without any. What an attempt does, and what is counted or logged
for its outcome, is the sink's business (the ``attempt`` and ``finished``
callables).
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

from ._destinations import Target
from ._report import ViolationReport

__all__ = ["DEFAULT_WORKERS", "Delivery", "Job"]

#: Sender threads of a sink by default. Each destination has at most one
#: attempt in flight and server-chosen destinations hold at most all threads
#: but one, so a destination that hangs delays only its own reports; four
#: covers a few hung destinations at once for the price of four idle threads.
DEFAULT_WORKERS = 4
# A sender thread with nothing to do for this long ends (a new one starts when needed).
_IDLE_EXIT = 30.0

_Key = tuple[bool, str, str, int]


@dataclass(order=True)
class Job:
    """One report for one destination; ordered by when its retry is due."""

    due: float
    seq: int
    target: Target = field(compare=False)
    report: ViolationReport = field(compare=False)
    attempt: int = field(default=0, compare=False)


#: ``attempt(job)``: ``("sent" | "retry" | "fail" | "refused", retry-after seconds, detail)``; never raises.
Attempt = Callable[[Job], tuple[str, float | None, str]]
#: ``finished(job, outcome, delay, detail)``: ``outcome`` is ``sent``, ``retry`` (again in
#: ``delay`` seconds), ``dropped``, ``refused`` or ``fail``. Called without the lock held.
Finished = Callable[[Job, str, float, str], None]


class Delivery:
    """The queue and the sender threads of one sink."""

    def __init__(
        self,
        attempt: Attempt,
        finished: Finished,
        *,
        workers: int,
        queue_size: int,
        retries: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        self._attempt = attempt
        self._finished = finished
        self.workers = workers
        self.queue_size = queue_size
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        # Everything about jobs is guarded by _cond.
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[_Key, deque[Job]] = {}
        # Destinations with queued jobs and no attempt in flight, in turn order.
        self._ready: OrderedDict[_Key, None] = OrderedDict()
        self._ready_server: OrderedDict[_Key, None] = OrderedDict()
        self._busy: set[_Key] = set()
        self._busy_server = 0
        self._queued = 0
        self._retry: list[Job] = []
        self._pending = 0  # queued, waiting for a retry, or being sent
        self._hurry = 0  # flushes/closes waiting: retry at once
        self._closed = False
        self._deadline: float | None = None
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._seq = itertools.count()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (nothing more is accepted)."""
        return self._closed

    def enqueue(self, job: Job) -> str:
        """Queue ``job``, starting a sender if needed: ``""``, or ``"dropped"`` (closed) / ``"full"``."""
        with self._cond:
            if self._closed:
                return "dropped"
            if self._queued >= self.queue_size:
                return "full"
            key = job.target.key
            jobs = self._queues.get(key)
            if jobs is None:
                jobs = self._queues[key] = deque()
            jobs.append(job)
            self._queued += 1
            self._pending += 1
            if key not in self._busy:
                (self._ready_server if job.target.server else self._ready)[key] = None
                if self._idle:
                    self._cond.notify_all()  # flush() waits on _cond too: wake every waiter
                elif len(self._threads) < self.workers:
                    thread = threading.Thread(target=self._run, name="pinengine-report-sender", daemon=True)
                    self._threads.append(thread)
                    thread.start()
        return ""

    # -- flushing and closing ------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every queued job is delivered or given up on (retrying at once). True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                while self._pending > 0:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._hurry -= 1

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop accepting jobs, deliver what is queued within ``timeout`` s, stop the threads.

        True when everything queued was delivered or given up on; False when
        jobs were still undelivered at the deadline (they are dropped).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._deadline = deadline
            threads = list(self._threads)
            self._cond.notify_all()
        if not threads:
            self._drop_queued()
            return True
        done = self.flush(timeout)
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            # A sender is stuck in an attempt (it ends at the attempt's
            # deadline): drop what is still queued now.
            self._drop_queued()
            return False
        return done

    def _drop_queued(self) -> None:
        with self._cond:
            dropped = self._take_queued()
        self._dropped(dropped)

    def _dropped(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._finished(job, "dropped", 0.0, "")

    def _take_queued(self) -> list[Job]:
        # With self._cond held: remove every queued job and pending retry (they are dropped).
        jobs = [job for queue_ in self._queues.values() for job in queue_] + self._retry
        self._queues.clear()
        self._ready.clear()
        self._ready_server.clear()
        self._retry = []
        self._queued = 0
        self._pending -= len(jobs)
        self._cond.notify_all()
        return jobs

    # -- the senders ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            outcome, retry_after, detail = self._attempt(job)
            self._finish(job, outcome, retry_after, detail)

    def _next_job(self) -> Job | None:
        """The next job this sender should attempt (its destination is then busy); None: stop."""
        me = threading.current_thread()
        idle_since: float | None = None
        with self._cond:
            while True:
                now = time.monotonic()
                deadline = self._deadline
                if deadline is not None and now >= deadline:
                    dropped = self._take_queued()
                    self._leave(me)
                    break
                hurry = self._hurry > 0 or self._closed
                while self._retry and (hurry or self._retry[0].due <= now):
                    due = heapq.heappop(self._retry)
                    self._pending -= 1  # _queue_locked counts it again
                    self._queue_locked(due)
                job = self._pick()
                if job is not None:
                    return job
                if self._queued or self._retry:
                    idle_since = None
                else:  # nothing to do: stop when closed, or when idle for long
                    if idle_since is None:
                        idle_since = now
                    if self._closed or now - idle_since >= _IDLE_EXIT:
                        self._leave(me)
                        return None
                wait = self._retry[0].due - now if self._retry else None
                if idle_since is not None:
                    wait = idle_since + _IDLE_EXIT - now
                if deadline is not None:
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                self._idle += 1
                try:
                    self._cond.wait(wait)
                finally:
                    self._idle -= 1
        self._dropped(dropped)
        return None

    def _leave(self, me: threading.Thread) -> None:
        # With self._cond held: this sender stops.
        if me in self._threads:
            self._threads.remove(me)

    def _queue_locked(self, job: Job) -> None:
        key = job.target.key
        jobs = self._queues.get(key)
        if jobs is None:
            jobs = self._queues[key] = deque()
        jobs.append(job)
        self._queued += 1
        self._pending += 1
        if key not in self._busy:
            (self._ready_server if job.target.server else self._ready)[key] = None

    def _pick(self) -> Job | None:
        # With self._cond held. The operator's destinations first; server-chosen
        # ones may hold all senders but one.
        ready = self._ready
        if not ready and self._busy_server < max(1, self.workers - 1):
            ready = self._ready_server
        if not ready:
            return None
        key, _ = ready.popitem(last=False)
        jobs = self._queues[key]
        job = jobs.popleft()
        if not jobs:
            del self._queues[key]
        self._queued -= 1
        self._busy.add(key)
        if job.target.server:
            self._busy_server += 1
        return job

    def _finish(self, job: Job, outcome: str, retry_after: float | None, detail: str) -> None:
        target = job.target
        delay = 0.0
        with self._cond:
            key = target.key
            self._busy.discard(key)
            if target.server:
                self._busy_server -= 1
            if key in self._queues:
                (self._ready_server if target.server else self._ready)[key] = None
            if outcome == "retry":
                deadline = self._deadline
                if deadline is not None and time.monotonic() >= deadline:
                    outcome = "dropped"  # closing, and out of time
                elif job.attempt < self.retries and len(self._retry) < self.queue_size:
                    delay = min(self.max_backoff, self.backoff * (2 ** job.attempt)) * random.uniform(0.5, 1.0)
                    if retry_after is not None:
                        delay = max(delay, min(retry_after, self.max_backoff))
                    job.attempt += 1
                    job.due = time.monotonic() + delay
                    job.seq = next(self._seq)
                    heapq.heappush(self._retry, job)
                else:
                    outcome = "fail"
            if outcome != "retry":
                self._pending -= 1
            self._cond.notify_all()
        self._finished(job, outcome, delay, detail)

"""A pin store in Redis, shared by a fleet of gateways (needs redis-py: ``pinengine[redis]``)."""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from .. import _json
from ._base import Change, CountedChange, PinRecord, PinStore, StoreError, check_record_size, noted_domain

__all__ = ["RedisStore"]


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _redact(url: str) -> str:
    """``url`` without its password, fit for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


class RedisStore(PinStore):
    """Records in Redis: one string key ``<namespace>:pin:<host>`` holding the record as JSON.

    ``url_or_client`` is a ``redis://`` / ``rediss://`` / ``unix://`` URL
    (the store makes a client with ``timeout``-second socket timeouts, so an
    unreachable server raises StoreError quickly) or a ready ``redis.Redis``
    client (used as it is, not closed by ``close()``). Every
    read-modify-write is an optimistic transaction (WATCH / MULTI / EXEC,
    retried on conflict), so processes on many machines can share the store
    and race safely. A record with ``expires_at`` also expires in Redis
    (PEXPIREAT, on the Redis server's clock). Distinct ``namespace`` values
    keep stores apart within one database. HPKP records are also indexed,
    in the same transactions, in sorted sets of hosts scored by expiry:
    ``<namespace>:noted`` (all) and ``<namespace>:noted:<domain>`` (per
    registrable domain, expiring with its last member), which the caps on
    noting count with ZCOUNT (any Redis version of the last decade). Redis errors become StoreError;
    a value that is not a valid record raises StoreError naming its key and
    is left as it is.
    """

    def __init__(
        self,
        url_or_client: str | Any,
        namespace: str = "pinengine",
        *,
        timeout: float = 1.0,
        max_attempts: int = 100,
    ) -> None:
        super().__init__()
        if not isinstance(namespace, str) or not namespace:
            raise ValueError("namespace must be a non-empty str")
        try:
            import redis
        except ImportError:
            raise StoreError("RedisStore needs redis-py: pip install 'pinengine[redis]'") from None
        self._exceptions = redis.exceptions
        self._owned = isinstance(url_or_client, str)
        if isinstance(url_or_client, str):
            self.where = f"Redis at {_redact(url_or_client)}"
            try:
                self._client: Any = redis.Redis.from_url(
                    url_or_client, socket_timeout=timeout, socket_connect_timeout=timeout
                )
            except ValueError as exc:
                raise StoreError(f"invalid Redis URL {_redact(url_or_client)}: {exc}") from None
        else:
            self._client = url_or_client
            kwargs = getattr(getattr(url_or_client, "connection_pool", None), "connection_kwargs", {})
            self.where = f"Redis at {kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        self.namespace = namespace
        self._prefix = f"{namespace}:pin:"
        self._noted_key = f"{namespace}:noted"
        self._max_attempts = max_attempts

    def __repr__(self) -> str:
        return f"RedisStore({self.where!r}, namespace={self.namespace!r})"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except self._exceptions.RedisError as exc:
            raise StoreError(f"{self.where}: {action}: {type(exc).__name__}: {exc}") from None

    def _key(self, host: str) -> str:
        return self._prefix + host

    def _parse(self, key: str, raw: object) -> PinRecord | None:
        if raw is None:
            return None
        where = f"{self.where}: key {key!r}"
        check_record_size(raw if isinstance(raw, bytes) else str(raw), where)
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError:
            raise StoreError(f"{where}: value is not UTF-8 text") from None
        try:
            data = _json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{where}: value is not valid JSON: {exc}") from None
        except RecursionError:
            raise StoreError(f"{where}: value is nested too deeply to be a pin record") from None
        record = PinRecord.from_dict(data, where=where)
        if self._key(record.host) != key:
            raise StoreError(f"{where}: holds a record for another host ({record.host})")
        return record

    def _read(self, host: str) -> PinRecord | None:
        key = self._key(host)
        with self._errors("cannot read"):
            raw = self._client.get(key)
        return self._parse(key, raw)

    def _read_all(self) -> list[PinRecord]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._prefix) + "*"
        records = []
        with self._errors("cannot read"):
            keys = [k.decode() if isinstance(k, bytes) else k
                    for k in self._client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                for key, raw in zip(chunk, self._client.mget(chunk), strict=True):
                    record = self._parse(key, raw)  # None: expired since the scan
                    if record is not None:
                        records.append(record)
        return records

    def _domain_key(self, host: str) -> str:
        return f"{self._noted_key}:{noted_domain(host)}"

    def _index_plan(self, pipe: Any, host: str, current: PinRecord | None, new: PinRecord | None) -> float | None:
        """Before MULTI, for a change touching an HPKP record: WATCH the domain's index, return its latest expiry.

        None when the HPKP index is not touched.
        """
        if not any(r is not None and r.source == "hpkp" for r in (current, new)):
            return None
        domain_key = self._domain_key(host)
        pipe.watch(domain_key)
        last = pipe.zrange(domain_key, -1, -1, withscores=True)
        return float(last[0][1]) if last else -math.inf

    def _write(
        self, pipe: Any, host: str, current: PinRecord | None, new: PinRecord | None, latest: float | None
    ) -> None:
        """Queue (after MULTI) replacing ``current`` by ``new``, and the matching change of the HPKP index.

        ``latest``: what ``_index_plan`` returned.
        """
        key = self._key(host)
        if new is None:
            pipe.delete(key)
        else:
            pipe.set(key, json.dumps(new.to_dict(), allow_nan=False))
            if new.expires_at is not None:
                pipe.pexpireat(key, math.ceil(new.expires_at * 1000))
        if latest is None:
            return
        domain_key = self._domain_key(host)
        if new is not None and new.source == "hpkp":
            score = math.inf if new.expires_at is None else new.expires_at
            pipe.zadd(self._noted_key, {host: score})
            pipe.zadd(domain_key, {host: score})
            # The domain's index lives as long as its longest-lived member: no key is left behind.
            latest = max(latest, score)
            if latest == math.inf:
                pipe.persist(domain_key)
            else:
                pipe.pexpireat(domain_key, math.ceil(latest * 1000))
        else:
            pipe.zrem(self._noted_key, host)
            pipe.zrem(domain_key, host)

    def _transact(self, host: str, change: Change) -> PinRecord | None:
        key = self._key(host)
        with self._errors("cannot write"):
            for _ in range(self._max_attempts):
                with self._client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(key)
                        current = self._parse(key, pipe.get(key))
                        new = change(current)
                        if new is current:
                            return current
                        latest = self._index_plan(pipe, host, current, new)
                        pipe.multi()
                        self._write(pipe, host, current, new, latest)
                        pipe.execute()
                        return new
                    except self._exceptions.WatchError:
                        continue  # someone else changed the key meanwhile: look again
        raise StoreError(f"{self.where}: key {key!r}: gave up after {self._max_attempts} conflicting updates")

    def _transact_counted(self, host: str, change: CountedChange, now: float) -> PinRecord | None:
        # WATCH the record and both indexes: a note elsewhere in the fleet meanwhile makes EXEC fail, and
        # this one counts again. Expired members are removed from both indexes on the way.
        key = self._key(host)
        domain_key = self._domain_key(host)
        live = f"({now!r}"
        with self._errors("cannot write"):
            for _ in range(self._max_attempts):
                with self._client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(key, self._noted_key, domain_key)
                        current = self._parse(key, pipe.get(key))
                        score = pipe.zscore(self._noted_key, host)
                        own = 1 if score is not None and float(score) > now else 0
                        total = int(pipe.zcount(self._noted_key, live, "+inf")) - own
                        in_domain = int(pipe.zcount(domain_key, live, "+inf")) - own
                        new = change(current, max(in_domain, 0), max(total, 0))
                        last = pipe.zrange(domain_key, -1, -1, withscores=True)
                        latest = float(last[0][1]) if last else -math.inf
                        pipe.multi()
                        pipe.zremrangebyscore(self._noted_key, "-inf", repr(now))
                        pipe.zremrangebyscore(domain_key, "-inf", repr(now))
                        if new is not current:
                            touched = any(r is not None and r.source == "hpkp" for r in (current, new))
                            self._write(pipe, host, current, new, latest if touched else None)
                        pipe.execute()
                        return new
                    except self._exceptions.WatchError:
                        continue
        raise StoreError(f"{self.where}: key {key!r}: gave up after {self._max_attempts} conflicting updates")

    def _noted_hosts(self, limit: int, now: float) -> list[tuple[str, bool]]:
        found = []
        with self._errors("cannot read"):
            hosts = [_text(h) for h in self._client.zrangebyscore(
                self._noted_key, f"({now!r}", "+inf", start=0, num=limit)]
            for start in range(0, len(hosts), 500):
                chunk = hosts[start:start + 500]
                for host, raw in zip(chunk, self._client.mget([self._key(h) for h in chunk]), strict=True):
                    try:
                        record = self._parse(self._key(host), raw)
                    except StoreError:  # unreadable: listed as noted, and its subdomains too (fail closed)
                        found.append((host, True))
                        continue
                    if record is not None and record.source == "hpkp" and record.is_live(now):
                        found.append((record.host, record.include_subdomains))
        return found

    def _close(self) -> None:
        if self._owned:
            with contextlib.suppress(Exception):
                self._client.close()

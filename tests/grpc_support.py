"""Helpers shared by the gRPC channel tests (pinengine.hooks.grpc against real grpcio servers)."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import grpc
import pytest

from pinengine import Pin, PinPolicy
from tests.certs import Chain, pem

HOST = "localhost"
TIMEOUT = 10
OVERRIDE = ("grpc.ssl_target_name_override", HOST)
ROUND_ROBIN = ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def policy_for(*pins: str, host: str = HOST, mode: str = "enforce") -> PinPolicy:
    return PinPolicy.from_mapping({"domains": [{"host": host, "pins": list(pins), "mode": mode}]})


def roots(chain: Chain) -> bytes:
    return pem(chain.root)


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


def until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()

"""Host names chosen by an attacker cannot grow what a policy remembers per name, nor change a decision.

A gateway verifies whatever names its clients (or the URLs it is handed)
ask for. ``PinPolicy`` remembers a decision plan per name (see
``policy.PLAN_CACHE_SIZE``): a flood of distinct names must stay within that
bound, and the pinned hosts must be decided exactly as before, during and
after the flood, on both verify paths.
"""

from __future__ import annotations

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine import policy as policy_module
from tests.certs import Chain, cached_chain, make_chain

pytestmark = pytest.mark.both_cores

HOST = "bank.test"


@pytest.fixture(scope="module")
def chains() -> tuple[Chain, Chain]:
    return cached_chain("p256", HOST), make_chain("p256", HOST)


def test_a_flood_of_names_stays_within_the_plan_bound(chains: tuple[Chain, Chain]) -> None:
    good, evil = chains
    policy = PinPolicy.from_mapping({"domains": [
        {"host": HOST, "pins": [str(Pin.from_certificate(good.ders[1])), str(Pin.from_certificate(good.ders[2]))]},
        {"host": "**.wild.test", "pins": [str(Pin.from_certificate(good.ders[1])), str(Pin.from_certificate(good.ders[2]))]},
    ]})
    bound = policy_module.PLAN_CACHE_SIZE
    assert policy.verify(HOST, good.ders).status == "match"
    for i in range(2 * bound + 10):
        wild = i % 64 == 1
        name = f"x{i}.wild.test" if wild else f"attacker-{i}.example"
        if wild:
            with pytest.raises(PinMismatchError):
                policy.verify(name, evil.ders)
        else:
            assert policy.verify(name, evil.ders).status == "not-pinned"
        assert len(policy._plans) <= bound
        if i % 997 == 0:
            with pytest.raises(PinMismatchError):
                policy.verify(HOST, evil.ders)
            assert policy.verify(HOST, good.ders).status == "match"
    batch = policy.verify_batch([(f"y{i}.example", evil.ders) for i in range(bound + 10)] + [(HOST, good.ders), (HOST, evil.ders)])
    assert len(policy._plans) <= bound
    assert all(r.status == "not-pinned" for r in batch[:-2])
    assert batch[-2].status == "match" and isinstance(batch[-1], PinMismatchError)


def test_the_same_name_in_other_spellings_gets_the_same_decision(chains: tuple[Chain, Chain]) -> None:
    good, evil = chains
    policy = PinPolicy.from_mapping({"domains": [
        {"host": HOST, "pins": [str(Pin.from_certificate(good.ders[1])), str(Pin.from_certificate(good.ders[2]))]},
    ]})
    for spelling in (HOST, "BANK.TEST", "bank.test.", " Bank.Test "):
        assert policy.verify(spelling, good.ders).status == "match"
        with pytest.raises(PinMismatchError):
            policy.verify(spelling, evil.ders)
        # Remembered now: the second time is decided the same way.
        with pytest.raises(PinMismatchError):
            policy.verify(spelling, evil.ders)
        assert policy.verify(spelling, good.ders).status == "match"

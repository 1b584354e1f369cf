"""The Toxiproxy client against a fake Toxiproxy API: the link faults' shared definitions mapped onto toxics."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.stack.toxiproxy import ToxiproxyControl
from tests.conftest import FakeHTTP

URL = "http://toxiproxy:8474"


@pytest.fixture
def toxi() -> tuple[FakeHTTP, ToxiproxyControl]:
    fake = FakeHTTP()
    return fake, ToxiproxyControl(fake.client(), URL)


def _toxics(fake: FakeHTTP) -> list[tuple[str, str, dict[str, int]]]:
    return sorted((t["type"], t["stream"], t["attributes"]) for t in fake.toxics.values())


def test_timeout_defaults_to_both_streams_like_the_relay(toxi: tuple[FakeHTTP, ToxiproxyControl]) -> None:
    fake, ctl = toxi
    ctl.set_fault("timeout")
    assert _toxics(fake) == [("timeout", "downstream", {"timeout": 0}), ("timeout", "upstream", {"timeout": 0})]
    ctl.set_fault("timeout", direction="down")
    assert _toxics(fake) == [("timeout", "downstream", {"timeout": 0})]


def test_latency_reset_and_none(toxi: tuple[FakeHTTP, ToxiproxyControl]) -> None:
    fake, ctl = toxi
    ctl.set_fault("latency", latency_ms=250, jitter_ms=50, direction="up")
    assert _toxics(fake) == [("latency", "upstream", {"latency": 250, "jitter": 50})]
    ctl.set_fault("reset")
    assert _toxics(fake) == [("reset_peer", "downstream", {"timeout": 0})]
    ctl.set_fault("none")
    assert fake.toxics == {} and fake.proxy_enabled


def test_down_disables_the_proxy_and_any_other_fault_enables_it(toxi: tuple[FakeHTTP, ToxiproxyControl]) -> None:
    fake, ctl = toxi
    ctl.set_fault("latency", latency_ms=10)
    ctl.set_fault("down")
    assert fake.proxy_enabled is False and fake.toxics == {}
    ctl.set_fault("none")
    assert fake.proxy_enabled is True


def test_params_are_checked_by_the_shared_definition(toxi: tuple[FakeHTTP, ToxiproxyControl]) -> None:
    fake, ctl = toxi
    with pytest.raises(HarnessError, match="redis fault latency: jiter_ms: Extra inputs are not permitted"):
        ctl.set_fault("latency", latency_ms=10, jiter_ms=5)
    with pytest.raises(HarnessError, match="kind must be one of none, latency, timeout, reset, down"):
        ctl.set_fault("meltdown")
    assert fake.requests == []      # refused before anything was sent

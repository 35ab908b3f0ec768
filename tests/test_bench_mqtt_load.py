"""The MQTT load generator (thingsray.benchmarks) against a private Mosquitto: what it counts is what happened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from thingsray.benchmarks.ingest import Consumer, find_mosquitto, mosquitto
from thingsray.benchmarks.load import Histogram, LoadRefused, LoadSpec, bucket_of, bucket_value, check_spec, run_load

MOSQUITTO = find_mosquitto()
needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="no mosquitto binary on PATH or in /usr/sbin (apt-get install mosquitto)")


@pytest.fixture(scope="module")
def broker() -> Iterator[int]:
    with mosquitto(MOSQUITTO) as port:
        yield port


def tokens(count: int) -> tuple[str, ...]:
    return tuple(f"test-token-{i}" for i in range(count))


@needs_mosquitto
def test_every_published_message_is_acknowledged_counted_and_delivered(broker: int) -> None:
    spec = LoadSpec("127.0.0.1", broker, tokens(6), workers=2, window=3, duration=1.5)
    with Consumer(broker) as consumer:
        result = run_load(spec)
        received = consumer.settle(result.acked)

    assert (result.connected, result.connect_failures, result.errors) == (6, 0, 0), result.error_samples
    assert result.sent > 0
    assert result.unacked == 0
    assert result.acked == result.sent
    assert set(result.acked_by_token) == set(spec.tokens)
    assert all(n > 0 for n in result.acked_by_token.values())
    assert sum(result.acked_by_token.values()) == result.acked
    assert result.latency.total == result.acked
    assert 0 < result.latency.percentile(50) <= result.latency.percentile(99) <= result.latency.max_us
    assert received == result.acked  # the broker delivered each acknowledged message once


@needs_mosquitto
def test_a_target_rate_bounds_what_is_sent(broker: int) -> None:
    spec = LoadSpec("127.0.0.1", broker, tokens(4), workers=1, window=1, duration=1.0, rate=200)
    result = run_load(spec)

    assert result.errors == 0 and result.unacked == 0
    assert 0 < result.acked == result.sent
    burst = max(1.0, 200 * 0.005)
    assert result.sent <= 200 * spec.duration + burst + 1  # the token bucket never lends more


def test_traffic_goes_to_loopback_only_and_within_bounds() -> None:
    with pytest.raises(LoadRefused, match="loopback"):
        check_spec(LoadSpec("10.1.2.3", 1883, tokens(1)))
    with pytest.raises(LoadRefused, match="loopback"):
        check_spec(LoadSpec("example.com", 1883, tokens(1)))
    with pytest.raises(LoadRefused, match="at most"):
        check_spec(LoadSpec("127.0.0.1", 1883, tokens(20_001)))
    with pytest.raises(LoadRefused, match="twice"):
        check_spec(LoadSpec("127.0.0.1", 1883, ("a", "a")))
    check_spec(LoadSpec("localhost", 1883, tokens(2)))


def test_histogram_keeps_latencies_within_its_precision() -> None:
    for us in (0, 1, 127, 128, 129, 1000, 65_432, 3_000_000):
        upper = bucket_value(bucket_of(us))
        assert us <= upper <= us + us / 64 + 1
    h, other = Histogram(), Histogram()
    for us in range(1, 101):
        (h if us % 2 else other).record(us * 100)
    h.merge(other)
    assert h.total == 100 and h.max_us == 10_000
    assert 5_000 <= h.percentile(50) <= 5_000 * 1.02
    assert 9_900 <= h.percentile(99) <= 9_900 * 1.02
    assert h.percentile(100) == 10_000

"""Failed-login limits per user and per client address, on the running platform; and the Redis
login limiter and revocation store against a real Redis.

Every test that fails logins on purpose connects from its own loopback address (127.x.y.z,
which Linux routes to 127.0.0.1) and uses its own users, so the limits it trips block nobody
else in the session.
"""

from __future__ import annotations

import os
import random
import uuid

import httpx
import pytest

from tests.conftest import assert_tb_error
from tests.test_users import PASSWORD, activate, create_user, customer_id_of

REDIS_URL = os.environ.get("THINGSRAY_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def from_address(base_url: str) -> httpx.Client:
    """A client whose connections leave from a loopback address no other test uses."""
    address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    return httpx.Client(base_url=base_url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def attempt(client: httpx.Client, email: str, password: str, **headers: str) -> httpx.Response:
    return client.post("/api/auth/login", json={"username": email, "password": password}, headers=headers)


@pytest.fixture
def fresh_user(tenant, base_url) -> str:
    user = create_user(tenant, "CUSTOMER_USER", customer_id=customer_id_of(tenant, "Customer C"))
    activate(base_url, tenant, user)
    return user["email"]


def test_eleventh_failure_of_a_user_is_refused_even_with_the_right_password(base_url, fresh_user):
    with from_address(base_url) as first, from_address(base_url) as second:
        for _ in range(10):
            assert_tb_error(attempt(first, fresh_user, "wrong-password"), 401, 10)
        assert_tb_error(attempt(first, fresh_user, PASSWORD), 429, 33)
        # the user's limit holds from any address
        assert_tb_error(attempt(second, fresh_user, PASSWORD), 429, 33)


def test_an_address_that_failed_too_often_is_refused_for_every_user(base_url, fresh_user):
    with from_address(base_url) as noisy, from_address(base_url) as elsewhere:
        for i in range(10):
            assert_tb_error(attempt(noisy, f"nobody-{i}-{uuid.uuid4().hex[:6]}@example.com", "x1234567"), 401, 10)
        assert_tb_error(attempt(noisy, fresh_user, PASSWORD), 429, 33)
        # X-Forwarded-For is anyone's to send: it does not buy a fresh address
        assert_tb_error(attempt(noisy, fresh_user, PASSWORD, **{"X-Forwarded-For": "203.0.113.7"}), 429, 33)
        assert attempt(elsewhere, fresh_user, PASSWORD).status_code == 200


def test_forged_forwarded_addresses_do_not_spread_failures(base_url, fresh_user):
    with from_address(base_url) as attacker:
        for i in range(10):
            forged = {"X-Forwarded-For": f"198.51.100.{i}"}
            assert_tb_error(attempt(attacker, f"ghost-{uuid.uuid4().hex[:6]}@example.com", "x1234567", **forged),
                            401, 10)
        assert_tb_error(attempt(attacker, fresh_user, PASSWORD, **{"X-Forwarded-For": "198.51.100.99"}), 429, 33)


# --- Redis-backed stores -----------------------------------------------------------------------------

@pytest.fixture
async def redis():
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # any failure means "no Redis here"
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}); set THINGSRAY_TEST_REDIS_URL to run these tests")
    yield client
    await client.aclose()


@pytest.fixture
async def database(platform):
    from thingsray.storage import connect

    db = await connect(platform.database_url, max_size=2)
    yield db
    await db.close()


async def test_redis_login_limiter_counts_failures_per_key(redis):
    from thingsray.serve_app.login_limits import RedisLoginLimiter

    limiter = RedisLoginLimiter(redis, per_minute=3)
    user, other, address = (f"test:{uuid.uuid4()}" for _ in range(3))
    try:
        assert not await limiter.blocked(user, address)
        for _ in range(2):
            await limiter.failed(user, address)
        assert not await limiter.blocked(user, address)
        await limiter.failed(user, address)
        assert await limiter.blocked(user)
        assert await limiter.blocked(other, address)  # any blocked key blocks the attempt
        assert not await limiter.blocked(other)
        assert 0 < await redis.ttl(f"thingsray:login:{user}") <= 61  # failures expire with the window
    finally:
        await redis.delete(*(f"thingsray:login:{k}" for k in (user, other, address)))


async def test_redis_revocations_follow_sessions_and_user_states(redis, database, tenant, base_url):
    from thingsray.serve_app.security import RedisRevocations, SessionState
    from thingsray.storage.entities import now_ms

    user = create_user(tenant, "CUSTOMER_USER", customer_id=customer_id_of(tenant, "Customer C"))
    activate(base_url, tenant, user)
    user_id = uuid.UUID(user["id"]["id"])
    store = RedisRevocations(redis, database)
    session, other_session = uuid.uuid4(), uuid.uuid4()
    issued = now_ms()
    try:
        assert await store.state(user_id, session, issued) is SessionState.VALID  # mirrored from PostgreSQL
        await store.revoke_session(session, now_ms() + 60_000)
        assert await store.state(user_id, session, issued) is SessionState.REVOKED
        assert await store.state(user_id, other_session, issued) is SessionState.VALID

        await store.revoke_user_tokens(user_id)
        assert await store.state(user_id, other_session, issued - 1) is SessionState.REVOKED
        later = now_ms() + 1
        assert await store.state(user_id, other_session, later) is SessionState.VALID

        await store.revoke_user_tokens(user_id, disabled=True)
        assert await store.state(user_id, other_session, now_ms() + 1) is SessionState.USER_DISABLED
        await store.revoke_user_tokens(user_id, disabled=False)
        assert await store.state(user_id, other_session, now_ms() + 1) is SessionState.VALID

        await store.revoke_user_tokens(user_id, deleted=True)
        assert await store.state(user_id, other_session, now_ms() + 1) is SessionState.USER_GONE
        # PostgreSQL holds the cut-off too, for replicas without Redis
        assert await database.fetchval("SELECT tokens_valid_after FROM user_credentials WHERE user_id = $1",
                                       user_id) >= issued
    finally:
        await redis.delete(f"thingsray:revoked:{session}", f"thingsray:user:{user_id}")


async def test_redis_revocations_mirror_a_disabled_user_on_first_sight(redis, database, tenant, base_url):
    from thingsray.serve_app.security import RedisRevocations, SessionState
    from thingsray.storage.entities import now_ms

    user = create_user(tenant, "CUSTOMER_USER", customer_id=customer_id_of(tenant, "Customer C"))
    activate(base_url, tenant, user)
    user_id = uuid.UUID(user["id"]["id"])
    assert tenant.post(f"/api/user/{user_id}/userCredentialsEnabled",
                       params={"userCredentialsEnabled": "false"}).status_code == 200
    store = RedisRevocations(redis, database)
    try:
        assert await store.state(user_id, uuid.uuid4(), now_ms() + 1) is SessionState.USER_DISABLED
        assert await redis.hget(f"thingsray:user:{user_id}", "state") == b"disabled"
        assert await store.state(uuid.uuid4(), uuid.uuid4(), now_ms()) is SessionState.USER_GONE
    finally:
        await redis.delete(f"thingsray:user:{user_id}")

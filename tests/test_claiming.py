"""Claiming end to end: a device offers itself (HTTP or MQTT ``claim``), a customer user who knows
its name and secret key claims it over REST, and it can be given back."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.conftest import assert_tb_error, unique
from tests.tenancy import customer_id

WAIT = 20.0


def unassigned_device(tenant: httpx.Client) -> dict[str, str]:
    token = f"CLAIM-{uuid.uuid4().hex[:12]}"
    name = unique("claimable")
    created = tenant.post("/api/device", params={"accessToken": token}, json={"name": name})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token, "name": name}


def offer_over_http(anonymous: httpx.Client, device: dict[str, str], body: dict) -> None:
    answer = anonymous.post(f"/api/v1/{device['token']}/claim", json=body)
    assert answer.status_code == 200, answer.text


def claim(client: httpx.Client, device: dict[str, str], secret: str | None) -> httpx.Response:
    body = {} if secret is None else {"secretKey": secret}
    return client.post(f"/api/customer/device/{device['name']}/claim", json=body)


def test_a_customer_claims_a_device_with_its_secret(tenant: httpx.Client, customer_a: httpx.Client,
                                                    customer_b: httpx.Client, anonymous: httpx.Client) -> None:
    device = unassigned_device(tenant)
    assert customer_a.get(f"/api/device/{device['id']}").status_code == 403
    offer_over_http(anonymous, device, {"secretKey": "s3cret", "durationMs": 600_000})
    wrong = claim(customer_a, device, "guess")
    assert wrong.status_code == 400 and wrong.json() == "FAILURE"
    claimed = claim(customer_a, device, "s3cret")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["response"] == "SUCCESS"
    owner = customer_id(tenant, "Customer A")
    assert claimed.json()["device"]["customerId"]["id"] == owner
    assert customer_a.get(f"/api/device/{device['id']}").json()["customerId"]["id"] == owner
    attributes = tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']}/values/attributes/SERVER_SCOPE",
                            params={"keys": "claimingData"}).json()
    assert attributes == [], "the offer is spent"
    again = claim(customer_b, device, "s3cret")
    assert again.status_code == 400 and again.json() == {"device": None, "response": "CLAIMED"}


def test_a_device_offers_itself_over_mqtt_without_a_key(tenant: httpx.Client, customer_a: httpx.Client,
                                                        mqtt_port: int) -> None:
    device = unassigned_device(tenant)
    acked = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set(device["token"])
    client.on_publish = lambda *_: acked.set()
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        client.publish("v1/devices/me/claim", json.dumps({"durationMs": 600_000}), qos=1)
        assert acked.wait(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()
    claimed = claim(customer_a, device, None)
    assert claimed.status_code == 200, claimed.text


def test_no_offer_or_an_expired_one_fails(tenant: httpx.Client, customer_a: httpx.Client,
                                          anonymous: httpx.Client) -> None:
    device = unassigned_device(tenant)
    nothing = claim(customer_a, device, "")
    assert nothing.status_code == 400 and nothing.json() == "FAILURE"
    offer_over_http(anonymous, device, {"secretKey": "k", "durationMs": 1})
    threading.Event().wait(0.05)  # let the one-millisecond offer lapse (a precondition, not a timing assertion)
    expired = claim(customer_a, device, "k")
    assert expired.status_code == 400 and expired.json() == "FAILURE"
    assert tenant.get(f"/api/device/{device['id']}").json()["customerId"]["id"] != customer_id(tenant, "Customer A")


def test_reclaiming_gives_the_device_back(tenant: httpx.Client, customer_a: httpx.Client, customer_b: httpx.Client,
                                          anonymous: httpx.Client) -> None:
    device = unassigned_device(tenant)
    offer_over_http(anonymous, device, {"secretKey": "x"})
    assert claim(customer_a, device, "x").status_code == 200
    assert_tb_error(customer_b.delete(f"/api/customer/device/{device['name']}/claim"), 403)
    given_back = customer_a.delete(f"/api/customer/device/{device['name']}/claim")
    assert given_back.status_code == 200, given_back.text
    assert customer_a.get(f"/api/device/{device['id']}").status_code == 403
    # the device may offer itself again, and the tenant administrator may take back any device
    offer_over_http(anonymous, device, {"secretKey": "y"})
    assert claim(customer_b, device, "y").status_code == 200
    assert tenant.delete(f"/api/customer/device/{device['name']}/claim").status_code == 200
    assert customer_b.get(f"/api/device/{device['id']}").status_code == 403


@pytest.mark.parametrize("who", ["tenant", "sysadmin"])
def test_only_customer_users_claim(request: pytest.FixtureRequest, tenant: httpx.Client, who: str) -> None:
    device = unassigned_device(tenant)
    assert_tb_error(request.getfixturevalue(who).post(f"/api/customer/device/{device['name']}/claim", json={}), 403)


def test_claiming_an_unknown_or_another_tenants_device_is_404(customer_a: httpx.Client,
                                                              other_tenant: httpx.Client) -> None:
    theirs = unassigned_device(other_tenant)
    assert_tb_error(claim(customer_a, theirs, None), 404)
    assert_tb_error(customer_a.post("/api/customer/device/no such device/claim", json={}), 404)

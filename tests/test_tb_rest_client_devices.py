"""Devices and device profiles driven by the official ``tb-rest-client``, as a user's script would.

The installed tb-rest-client (4.4) has one ``RestClient`` class (no ``RestClientCE``); it assigns
devices through ThingsBoard PE's owner API and reads tenant device infos from /api/deviceInfos/all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from tb_rest_client.models import (
    Device,
    DeviceProfile,
    DeviceProfileData,
    SaveDeviceWithCredentialsRequest,
)
from tb_rest_client.models import DeviceCredentials as DeviceCredentialsModel
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client import RestClient

from tests.conftest import CUSTOMER_A, TENANT_ADMIN, unique
from thingsray.storage.entities import NULL_UUID


@pytest.fixture(scope="module")
def rest(base_url: str) -> Iterator[RestClient]:
    client = RestClient(base_url=base_url)
    client.login(username=TENANT_ADMIN[0], password=TENANT_ADMIN[1])
    yield client


def test_create_devices_with_and_without_token_and_read_their_tokens(rest):
    plain = rest.save_device(Device(name=unique("Client device"), label="plain"))
    assert plain.id.id and plain.id.entity_type == "DEVICE"
    assert plain.type == "default" and plain.label == "plain"
    default_profile = rest.get_default_device_profile_info()
    assert plain.device_profile_id.id == default_profile.id.id
    generated = rest.get_device_credentials_by_device_id(plain.id)
    assert generated.credentials_type == "ACCESS_TOKEN" and len(generated.credentials_id) == 20

    token = f"CLIENT_{uuid.uuid4().hex}"
    with_token = rest.save_device(Device(name=unique("Client device")), access_token=token)
    credentials = rest.get_device_credentials_by_device_id(with_token.id)
    assert credentials.credentials_id == token and credentials.device_id.id == with_token.id.id

    fetched = rest.get_device_by_id(with_token.id)
    assert fetched.name == with_token.name and fetched.version == with_token.version
    assert rest.get_tenant_device(with_token.name).id.id == with_token.id.id
    assert {d.id.id for d in rest.get_devices_by_ids([plain.id.id, with_token.id.id])} == {
        plain.id.id, with_token.id.id}
    assert "default" in {t.type for t in rest.get_device_types()}


def test_update_device_and_credentials(rest):
    device = rest.save_device(Device(name=unique("Client update")))
    device.label = "moved to the attic"
    updated = rest.save_device(device)
    assert updated.label == "moved to the attic" and updated.version == device.version + 1

    credentials = rest.get_device_credentials_by_device_id(device.id)
    credentials.credentials_id = f"ROTATED_{uuid.uuid4().hex}"
    saved = rest.update_device_credentials(credentials)
    assert saved.credentials_id == credentials.credentials_id
    assert rest.get_device_credentials_by_device_id(device.id).credentials_id == credentials.credentials_id

    token = f"WITH_CREDS_{uuid.uuid4().hex}"
    request = SaveDeviceWithCredentialsRequest(
        device=Device(name=unique("Client with credentials")),
        credentials=DeviceCredentialsModel(credentials_type="ACCESS_TOKEN", credentials_id=token))
    created = rest.save_device_with_credentials(request)
    assert rest.get_device_credentials_by_device_id(created.id).credentials_id == token


def test_page_and_search_devices_and_infos(rest):
    prefix = unique("Client paged")
    created = [rest.save_device(Device(name=f"{prefix} {i}")) for i in range(3)]
    page = rest.get_tenant_devices(page_size=2, page=0, text_search=prefix, sort_property="name", sort_order="ASC")
    assert [d.name for d in page.data] == [f"{prefix} 0", f"{prefix} 1"]
    assert page.total_elements == 3 and page.total_pages == 2 and page.has_next is True
    rest_page = rest.get_tenant_devices(page_size=2, page=1, text_search=prefix, sort_property="name",
                                        sort_order="ASC")
    assert [d.name for d in rest_page.data] == [f"{prefix} 2"] and rest_page.has_next is False

    infos = rest.get_tenant_device_infos(page_size=10, page=0, text_search=prefix, sort_property="name",
                                         sort_order="ASC")
    assert [d.name for d in infos.data] == [d.name for d in created]
    assert all(d.active is False and d.owner_name == "Tenant" for d in infos.data)
    info = rest.get_device_info_by_id(created[0].id)
    assert info.name == created[0].name and info.active is False


def test_assign_to_customer_and_unassign(rest, base_url):
    customer = rest.get_tenant_customer("Customer A")
    device = rest.save_device(Device(name=unique("Client assigned")))
    assigned = rest.assign_device_to_customer(customer.id, device.id)
    assert assigned.customer_id.id == customer.id.id

    as_customer = RestClient(base_url=base_url)
    as_customer.login(username=CUSTOMER_A[0], password=CUSTOMER_A[1])
    seen = as_customer.get_customer_devices(customer.id, page_size=10, page=0, text_search=device.name)
    assert [d.id.id for d in seen.data] == [device.id.id]
    assert as_customer.get_device_by_id(device.id).name == device.name
    with pytest.raises(ApiException) as denied:
        as_customer.get_device_credentials_by_device_id(device.id)
    assert denied.value.status == 403

    # the tenant's own infos leave out customers' devices unless asked for them
    own = rest.get_tenant_device_infos(page_size=10, page=0, text_search=device.name)
    assert own.data == []
    everything = rest.get_tenant_device_infos(page_size=10, page=0, text_search=device.name, include_customers=True)
    assert [d.owner_name for d in everything.data] == ["Customer A"]

    unassigned = rest.unassign_device_from_customer(device.id)
    assert unassigned.customer_id.id == str(NULL_UUID)
    with pytest.raises(ApiException) as gone:
        as_customer.get_device_by_id(device.id)
    assert gone.value.status == 403


def test_device_profiles_create_read_and_default(rest):
    original_default = rest.get_default_device_profile_info()
    name = unique("Client profile")
    profile = rest.save_device_profile(DeviceProfile(
        name=name, description="from tb-rest-client", type="DEFAULT", transport_type="MQTT",
        provision_type="DISABLED", profile_data=DeviceProfileData()))
    assert profile.id.entity_type == "DEVICE_PROFILE" and profile.name == name
    assert profile.transport_type == "MQTT" and profile.default is False
    assert rest.get_device_profile_by_id(profile.id).description == "from tb-rest-client"
    info = rest.get_device_profile_info_by_id(profile.id)
    assert info.name == name and info.transport_type == "MQTT"
    listed = rest.get_device_profile_infos(page_size=10, page=0, text_search=name)
    assert [p.id.id for p in listed.data] == [profile.id.id]
    assert [p.id.id for p in rest.get_device_profiles(page_size=10, page=0, text_search=name).data] == [profile.id.id]
    assert name in {p.name for p in rest.get_device_profile_names()}

    device = rest.save_device(Device(name=unique("Client MQTT device"), device_profile_id=profile.id))
    assert device.type == name

    try:
        made_default = rest.set_default_device_profile(profile.id)
        assert made_default.default is True
        assert rest.get_default_device_profile_info().id.id == profile.id.id
    finally:
        rest.set_default_device_profile(original_default.id)
    assert rest.get_default_device_profile_info().id.id == original_default.id.id

    with pytest.raises(ApiException) as in_use:
        rest.delete_device_profile(profile.id)
    assert in_use.value.status == 400


def test_delete_device(rest):
    device = rest.save_device(Device(name=unique("Client doomed")))
    rest.delete_device(device.id)
    with pytest.raises(ApiException) as missing:
        rest.get_device_by_id(device.id)
    assert missing.value.status == 404
    unused = rest.save_device_profile(DeviceProfile(name=unique("Client unused profile"), type="DEFAULT",
                                                    transport_type="DEFAULT", provision_type="DISABLED"))
    rest.delete_device_profile(unused.id)
    with pytest.raises(ApiException):
        rest.get_device_profile_by_id(unused.id)

"""The isolation story with the official client: the system administrator creates a second tenant
and its admin through ``tb-rest-client``; that admin sees nothing of the first tenant.

The installed tb-rest-client (4.x) ships one ``RestClient`` class (older releases called it
``RestClientCE``); every call below is the client's own, unchanged.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import pytest
from tb_rest_client.models import ActivateUserRequest, Tenant, User
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client import RestClient

from tests.conftest import CUSTOMER_A, SYSADMIN, TENANT_ADMIN, unique

PASSWORD = "second-tenant-pass"


def client(base_url: str, email: str, password: str) -> RestClient:
    rest = RestClient(base_url=base_url)
    rest.login(email, password)
    return rest


def status_of(call) -> int:
    with pytest.raises(ApiException) as raised:
        call()
    return raised.value.status


@pytest.fixture(scope="module")
def second(base_url: str):
    """The second tenant, its activated admin's address, and the sysadmin's client."""
    sysadmin = client(base_url, *SYSADMIN)
    tenant = sysadmin.save_tenant(Tenant(title=unique("Second tenant"), region="EU"))
    email = f"second-admin-{uuid.uuid4().hex[:8]}@example.com"
    admin = sysadmin.save_user(User(email=email, authority="TENANT_ADMIN", tenant_id=tenant.id,
                                    first_name="Second", last_name="Admin"), send_activation_mail=False)
    link = sysadmin.get_activation_link(admin.id)
    token = parse_qs(urlparse(link).query)["activateToken"][0]
    pair = sysadmin.activate_user(ActivateUserRequest(activate_token=token, password=PASSWORD),
                                  send_activation_mail=False)
    assert pair.token and pair.refresh_token
    return {"sysadmin": sysadmin, "tenant": tenant, "admin": admin, "email": email}


def test_sysadmin_manages_the_second_tenant_with_the_client(second):
    sysadmin, tenant = second["sysadmin"], second["tenant"]
    assert tenant.name == tenant.title and tenant.region == "EU"
    assert sysadmin.get_tenant_by_id(tenant.id).title == tenant.title
    assert sysadmin.get_tenant_info_by_id(tenant.id).tenant_profile_name == "Default"
    found = sysadmin.get_tenants(page_size=10, page=0, text_search=tenant.title)
    assert [t.id.id for t in found.data] == [tenant.id.id]
    assert sysadmin.get_tenant_infos(page_size=10, page=0, text_search=tenant.title).total_elements == 1
    admins = sysadmin.get_tenant_admins(tenant.id, page_size=10, page=0)
    assert [u.email for u in admins.data] == [second["email"]]
    assert sysadmin.get_user_by_id(second["admin"].id).authority == "TENANT_ADMIN"


def test_second_admin_sees_nothing_of_the_first_tenant(second, base_url, tenant):
    admin = client(base_url, second["email"], PASSWORD)
    me = admin.get_user()
    assert me.authority == "TENANT_ADMIN" and me.tenant_id.id == second["tenant"].id.id
    devices = admin.get_tenant_devices(page_size=100, page=0)
    assert devices.data == [] and devices.total_elements == 0
    customers = admin.get_customers(page_size=100, page=0)
    assert customers.data == [] and customers.total_elements == 0
    assert [u.email for u in admin.get_users(page_size=100, page=0).data] == [second["email"]]

    first_devices = tenant.get("/api/tenant/devices", params={"pageSize": 100, "page": 0}).json()["data"]
    assert first_devices, "the demo tenant has devices"
    assert status_of(lambda: admin.get_device_by_id(first_devices[0]["id"]["id"])) == 404
    first_tenant_id = tenant.get("/api/auth/user").json()["tenantId"]["id"]
    assert status_of(lambda: admin.get_tenant_by_id(first_tenant_id)) == 404
    first_customer = tenant.get("/api/customers", params={"pageSize": 1, "page": 0}).json()["data"][0]
    assert status_of(lambda: admin.get_customer_users(first_customer["id"]["id"], 10, 0)) == 404
    assert status_of(lambda: admin.save_tenant(Tenant(title=unique("Usurper")))) == 403
    assert status_of(lambda: admin.get_tenants(page_size=10, page=0)) == 403
    assert admin.get_tenant_by_id(second["tenant"].id).title == second["tenant"].title


def test_first_tenant_admin_cannot_read_or_list_tenants(second, base_url):
    first = client(base_url, *TENANT_ADMIN)
    assert status_of(lambda: first.get_tenant_by_id(second["tenant"].id)) == 404
    assert status_of(lambda: first.get_tenant_info_by_id(second["tenant"].id)) == 404
    assert status_of(lambda: first.get_tenants(page_size=10, page=0)) == 403
    assert status_of(lambda: first.get_user_by_id(second["admin"].id)) == 404


def test_customer_user_cannot_list_users_of_another_customer(base_url, tenant):
    customer = client(base_url, *CUSTOMER_A)
    other = tenant.get("/api/tenant/customers", params={"customerTitle": "Customer B"}).json()
    assert status_of(lambda: customer.get_customer_users(other["id"]["id"], 10, 0)) == 403
    emails = {u.email for u in customer.get_users(page_size=100, page=0).data}
    assert CUSTOMER_A[0] in emails and "customerB@thingsboard.org" not in emails


def test_disabling_ends_the_session_at_once_and_deleting_the_tenant_ends_access(second, base_url):
    sysadmin, admin_id = second["sysadmin"], second["admin"].id
    admin = client(base_url, second["email"], PASSWORD)
    assert admin.get_user().email == second["email"]
    sysadmin.set_user_credentials_enabled(admin_id, user_credentials_enabled=False)
    assert status_of(admin.get_user) == 401
    sysadmin.set_user_credentials_enabled(admin_id, user_credentials_enabled=True)
    admin = client(base_url, second["email"], PASSWORD)
    assert admin.get_user().email == second["email"]

    sysadmin.delete_tenant(second["tenant"].id)
    assert status_of(admin.get_user) == 401
    assert status_of(lambda: sysadmin.get_tenant_by_id(second["tenant"].id)) == 404
    again = RestClient(base_url=base_url)
    again.login(second["email"], PASSWORD)
    assert again.get_token() is None  # the login was refused: no token to use

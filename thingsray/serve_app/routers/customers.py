"""/api/customer, /api/customers: a tenant's customers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from thingsray.serve_app import crud
from thingsray.serve_app.access import load
from thingsray.serve_app.deps import PrincipalDep, ServicesDep, page_params, parse_uuid
from thingsray.serve_app.errors import NotFound
from thingsray.serve_app.models import ContactIn, Name
from thingsray.serve_app.permissions import Operation, Resource, require, tenant_scope
from thingsray.storage import tables
from thingsray.storage.entities import PageQuery

router = APIRouter(tags=["customer"])
CustomerPage = Annotated[PageQuery, Depends(page_params(tables.CUSTOMER.sort_columns))]


class CustomerIn(ContactIn):
    title: Name


@router.get("/api/customer/{customerId}", summary="Get a customer")
async def get_customer(customerId: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, parse_uuid(customerId))


@router.get("/api/customer/{customerId}/shortInfo", summary="Title and public flag of a customer")
async def get_customer_short_info(customerId: str, principal: PrincipalDep,
                                  services: ServicesDep) -> dict[str, Any]:
    customer = await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, parse_uuid(customerId))
    return {"title": customer["title"], "isPublic": False}


@router.get("/api/customer/{customerId}/title", summary="Title of a customer")
async def get_customer_title(customerId: str, principal: PrincipalDep, services: ServicesDep) -> str:
    customer = await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, parse_uuid(customerId))
    return customer["title"]


@router.post("/api/customer", summary="Create or update a customer")
async def save_customer(body: CustomerIn, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    saved, _ = await crud.save(services, principal, tables.CUSTOMER, Resource.CUSTOMER,
                               body.model_dump(exclude_unset=True))
    return saved


@router.delete("/api/customer/{customerId}", summary="Delete a customer, its users, and unassign its entities")
async def delete_customer(customerId: str, principal: PrincipalDep, services: ServicesDep) -> None:
    customer_id = parse_uuid(customerId)
    await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id, Operation.DELETE)
    async with services.db.transaction() as conn:
        for table in ("device", "asset", "entity_view"):
            await conn.execute(f"UPDATE {table} SET customer_id = NULL WHERE customer_id = $1", customer_id)
        await conn.execute(
            "UPDATE dashboard SET assigned_customers = COALESCE((SELECT jsonb_agg(c) FROM "
            "jsonb_array_elements(assigned_customers) c WHERE c->'customerId'->>'id' <> $1), '[]'::jsonb) "
            "WHERE assigned_customers @> jsonb_build_array(jsonb_build_object("
            "'customerId', jsonb_build_object('id', $1::text)))", str(customer_id))
    users = await services.db.fetch("SELECT id FROM tb_user WHERE customer_id = $1", customer_id)
    await crud.delete(services, principal, tables.CUSTOMER, Resource.CUSTOMER, customer_id)
    for user in users:  # their rows went with the customer; their tokens go too
        await services.revocations.revoke_user_tokens(user["id"], deleted=True)


@router.get("/api/customers", summary="A page of the tenant's customers")
async def get_customers(page: CustomerPage, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    require(principal, Resource.CUSTOMER, Operation.CREATE)  # listing is for those who manage them
    return await services.repo(tables.CUSTOMER).page(page, {"tenant_id": tenant_scope(principal)})


@router.get("/api/tenant/customers", summary="Find a customer of the tenant by title")
async def get_tenant_customer(principal: PrincipalDep, services: ServicesDep,
                              customerTitle: Annotated[str, Query(max_length=255)]) -> dict[str, Any]:
    require(principal, Resource.CUSTOMER, Operation.READ)
    customer = await services.repo(tables.CUSTOMER).find_one(tenant_id=tenant_scope(principal),
                                                               title=customerTitle)
    if customer is None:
        raise NotFound(f"Customer with title [{customerTitle}] is not found")
    return await load(services, principal, tables.CUSTOMER, Resource.CUSTOMER,
                      parse_uuid(customer["id"]["id"]))

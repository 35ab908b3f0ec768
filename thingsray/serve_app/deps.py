"""FastAPI dependencies shared by every router: services, the caller, paging, ids."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Query, Request

from thingsray.serve_app.errors import AuthenticationFailed, BadRequest
from thingsray.serve_app.security import Principal, SessionState
from thingsray.serve_app.services import Services
from thingsray.storage.entities import PageQuery


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(request: Request) -> str | None:
    """The JWT from ``X-Authorization: Bearer`` (ThingsBoard's header) or ``Authorization``."""
    for header in ("x-authorization", "authorization"):
        value = request.headers.get(header)
        if value:
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


async def authenticate(services: Services, token: str | None) -> Principal:
    if not token:
        raise AuthenticationFailed("Authentication failed")
    claims = services.tokens.decode(token)
    principal = services.tokens.principal(claims)
    state = await services.revocations.state(principal.user_id, principal.session_id,
                                             int(claims.get("issuedMs", claims.get("iat", 0) * 1000)))
    if state is SessionState.USER_DISABLED:
        raise AuthenticationFailed("User account is not active")
    if state is not SessionState.VALID:
        raise AuthenticationFailed("Token is not valid anymore")
    return principal


async def current_principal(request: Request, services: ServicesDep) -> Principal:
    principal = await authenticate(services, bearer_token(request))
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def parse_uuid(value: str, what: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise BadRequest(f"Invalid UUID string: {value}") from None


def page_params(sort_columns: Mapping[str, str]):
    """A dependency reading ``pageSize``, ``page``, ``textSearch``, ``sortProperty``, ``sortOrder``
    for an entity whose sortable properties are ``sort_columns``."""

    def dependency(
        request: Request,
        pageSize: Annotated[int, Query(ge=1, le=100_000, description="Maximum amount of entities in one page")],
        page: Annotated[int, Query(ge=0, le=10_000_000, description="Sequence number of the page (0-based)")],
        textSearch: Annotated[str | None, Query(max_length=255)] = None,
        sortProperty: Annotated[str | None, Query(max_length=255)] = None,
        sortOrder: Annotated[str | None, Query(max_length=16)] = None,
    ) -> PageQuery:
        services: Services = request.app.state.services
        if pageSize > services.settings.max_page_size:
            raise BadRequest(f"pageSize must not exceed {services.settings.max_page_size}")
        column = None
        if sortProperty:
            column = sort_columns.get(sortProperty)
            if column is None:
                raise BadRequest(f"Unsupported sort property '{sortProperty}'; "
                                 f"use one of {', '.join(sorted(sort_columns))}")
        order = (sortOrder or "ASC").upper()
        if order not in ("ASC", "DESC"):
            raise BadRequest(f"Invalid sortOrder '{sortOrder}': use ASC or DESC")
        return PageQuery(page=page, page_size=pageSize, text_search=textSearch,
                         sort_column=column, sort_desc=order == "DESC")

    return dependency

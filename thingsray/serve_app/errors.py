"""ThingsBoard's REST error body, and the exceptions that become it.

Every error leaves as ``{"status", "message", "errorCode", "timestamp"}`` with ThingsBoard's
codes; nothing leaves as a stack trace.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from thingsray.storage.entities import DuplicateEntity, VersionConflict

log = logging.getLogger(__name__)


class ErrorCode(enum.IntEnum):
    GENERAL = 2
    AUTHENTICATION = 10
    JWT_TOKEN_EXPIRED = 11
    CREDENTIALS_EXPIRED = 15
    PERMISSION_DENIED = 20
    INVALID_ARGUMENTS = 30
    BAD_REQUEST_PARAMS = 31
    ITEM_NOT_FOUND = 32
    TOO_MANY_REQUESTS = 33
    TOO_MANY_UPDATES = 34
    VERSION_CONFLICT = 35
    ENTITIES_LIMIT_EXCEEDED = 41
    PASSWORD_VIOLATION = 45
    DATABASE = 46


def error_body(status: int, message: str, code: ErrorCode) -> dict[str, Any]:
    return {"status": status, "message": message, "errorCode": int(code),
            "timestamp": int(time.time() * 1000)}


class ApiError(Exception):
    """An error with ThingsBoard's status, code and message."""

    status = 500
    code = ErrorCode.GENERAL
    default_message = "Internal server error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.status, self.message, self.code), status_code=self.status)


class BadRequest(ApiError):
    status = 400
    code = ErrorCode.BAD_REQUEST_PARAMS
    default_message = "Invalid request"


class InvalidArguments(ApiError):
    status = 400
    code = ErrorCode.INVALID_ARGUMENTS
    default_message = "Invalid arguments"


class AuthenticationFailed(ApiError):
    status = 401
    code = ErrorCode.AUTHENTICATION
    default_message = "Authentication failed"


class TokenExpired(ApiError):
    status = 401
    code = ErrorCode.JWT_TOKEN_EXPIRED
    default_message = "Token has expired"


class PermissionDenied(ApiError):
    status = 403
    code = ErrorCode.PERMISSION_DENIED
    default_message = "You don't have permission to perform this operation!"


class NotFound(ApiError):
    status = 404
    code = ErrorCode.ITEM_NOT_FOUND
    default_message = "Requested item wasn't found!"


class Conflict(ApiError):
    status = 409
    code = ErrorCode.VERSION_CONFLICT
    default_message = "The entity was already changed by someone else"


class TooManyRequests(ApiError):
    status = 429
    code = ErrorCode.TOO_MANY_REQUESTS
    default_message = "Too many requests"


class ServiceUnavailable(ApiError):
    status = 503
    code = ErrorCode.GENERAL
    default_message = "Service unavailable"


class PasswordViolation(ApiError):
    status = 400
    code = ErrorCode.PASSWORD_VIOLATION
    default_message = "Password does not meet the password policy"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return BadRequest(_describe_validation(exc)).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: ErrorCode.AUTHENTICATION, 403: ErrorCode.PERMISSION_DENIED,
                404: ErrorCode.ITEM_NOT_FOUND, 429: ErrorCode.TOO_MANY_REQUESTS}.get(
                    exc.status_code, ErrorCode.GENERAL if exc.status_code >= 500 else ErrorCode.BAD_REQUEST_PARAMS)
        body = error_body(exc.status_code, str(exc.detail), code)
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(DuplicateEntity)
    async def _duplicate(_: Request, exc: DuplicateEntity) -> JSONResponse:
        return BadRequest(str(exc)).response()

    @app.exception_handler(VersionConflict)
    async def _version(_: Request, exc: VersionConflict) -> JSONResponse:
        return Conflict(f"{Conflict.default_message}: {exc}").response()

    @app.exception_handler(asyncpg.DataError)
    async def _data(_: Request, exc: asyncpg.DataError) -> JSONResponse:
        # a value the column refuses (too long, out of range): the caller's input, not our fault
        return BadRequest(f"Invalid value: {exc.args[0] if exc.args else exc}").response()

    @app.exception_handler(asyncpg.ForeignKeyViolationError)
    async def _foreign_key(_: Request, exc: asyncpg.ForeignKeyViolationError) -> JSONResponse:
        return BadRequest(f"Referenced entity does not exist or is still in use ({exc.constraint_name})").response()

    @app.exception_handler(asyncpg.NotNullViolationError)
    async def _not_null(_: Request, exc: asyncpg.NotNullViolationError) -> JSONResponse:
        column = getattr(exc, "column_name", None) or "a required field"
        return BadRequest(f"Invalid value: {column} must not be null").response()

    @app.exception_handler(asyncpg.CheckViolationError)
    async def _check(_: Request, exc: asyncpg.CheckViolationError) -> JSONResponse:
        return BadRequest(f"Invalid value ({exc.constraint_name})").response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ApiError().response()


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        location = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{location or 'request'}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)

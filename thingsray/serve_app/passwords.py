"""bcrypt password hashes, computed off the event loop (a hash costs tens of milliseconds)."""

from __future__ import annotations

import asyncio

import bcrypt

from thingsray.serve_app.errors import PasswordViolation

MIN_LENGTH = 6
MAX_LENGTH = 72  # bcrypt reads no further than 72 bytes


def check_policy(password: str) -> None:
    size = len(password.encode())
    if size < MIN_LENGTH:
        raise PasswordViolation(f"Password must be at least {MIN_LENGTH} characters long")
    if size > MAX_LENGTH:
        raise PasswordViolation(f"Password must be at most {MAX_LENGTH} bytes long")


def hash_password_sync(password: str, rounds: int = 10) -> str:
    return bcrypt.hashpw(password.encode()[:MAX_LENGTH], bcrypt.gensalt(rounds)).decode()


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(password: str, hashed: str | None) -> bool:
    if not hashed:
        return False
    return await asyncio.to_thread(bcrypt.checkpw, password.encode()[:MAX_LENGTH], hashed.encode())

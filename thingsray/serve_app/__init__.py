"""The Ray Serve application: REST routers, auth, WebSockets.

``create_app`` is resolved lazily so that light modules of this package (passwords, errors)
can be imported without pulling in every router."""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from thingsray.serve_app.app import create_app

        return create_app
    raise AttributeError(name)

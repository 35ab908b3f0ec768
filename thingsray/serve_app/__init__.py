"""The Ray Serve application: REST routers, auth, WebSockets."""

from thingsray.serve_app.app import create_app

__all__ = ["create_app"]

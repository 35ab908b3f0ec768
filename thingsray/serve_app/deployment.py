"""The Serve deployment: the FastAPI app built inside each replica."""

from __future__ import annotations

import os
from typing import Any

from ray import serve

from thingsray.config import Settings
from thingsray.serve_app.app import create_app

APP_NAME = "thingsray"


def _keep_replica_grpc_on_loopback() -> None:
    """Serve 2.60 binds each replica's inter-deployment gRPC server to ``[::]:0`` whatever the
    node address; on a loopback-only Ray (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, our single-machine
    default) bind it to 127.0.0.1 like every other Ray port. Runs in the replica process, where
    this module is imported before the replica starts that server."""
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        return
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "_thingsray_loopback", False):
        return

    def loopback(server: Any, address: str) -> int:
        return original(server, address.replace("[::]", "127.0.0.1", 1))

    loopback._thingsray_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = loopback


_keep_replica_grpc_on_loopback()


@serve.ingress()
class RestIngress:
    """One replica of the REST surface; the app (and its pool) is built in the replica."""

    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        self._settings = Settings(**settings)
        self._database_url = database_url

    def __serve_build_asgi_app__(self) -> Any:
        replica = serve.get_replica_context().replica_id.unique_id
        return create_app(self._settings, self._database_url, replica_id=replica)


def serve_logging(settings: Settings) -> dict[str, Any]:
    """Serve's own log settings: a log line per request only at DEBUG (ThingsBoard does not log
    requests either; at INFO the access log was 3 % of a request's CPU in the replica and more in
    the proxy)."""
    level = settings.log_level.upper()
    return {"log_level": level, "enable_access_log": level == "DEBUG"}


def build(settings: Settings, database_url: str) -> Any:
    """The Serve application for ``serve.run``; replicas reserve no CPU (DESIGN.md section 8)."""
    deployment = serve.deployment(
        RestIngress,
        name="RestIngress",
        num_replicas=settings.serve_replicas,
        max_ongoing_requests=10_000,
        ray_actor_options={"num_cpus": 0},
        health_check_period_s=10,
        logging_config=serve_logging(settings),
    )
    return deployment.bind(settings.to_dict(), database_url)

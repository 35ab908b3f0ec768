"""One APIRouter per area; ``ALL`` is what the application mounts, in this order."""

from thingsray.serve_app.routers import auth, customers

ALL = (auth.router, customers.router)

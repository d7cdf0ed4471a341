"""Model admin: the JSON admin API for scripts (admin scope) and the admin pages.

Each module below attaches its routes to a blueprint of ``app.admin.blueprints``
when it is imported; the factory registers the blueprints from here.
"""

from app.admin import api, drift, logs, quality, rollouts, users, versions
from app.admin.blueprints import api_bp, pages_bp

# Imported for their routes.
ROUTE_MODULES = (api, logs, rollouts, users, versions, quality, drift)

__all__ = ["api_bp", "pages_bp"]

"""Model admin: the JSON admin API for scripts (admin scope) and the admin pages.

Each module below attaches its routes to a blueprint of ``app.admin.blueprints``
when it is imported; the factory registers the blueprints from here.
"""

from app.admin import api, drift, logs, rollouts, users, versions
from app.admin.blueprints import api_bp, pages_bp

ROUTE_MODULES = (api, logs, rollouts, users, versions, drift)  # imported for routes

__all__ = ["api_bp", "pages_bp"]

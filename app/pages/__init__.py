"""Browser pages for signed-in users: predict from a form or a CSV file (run as a
background job), job results, and the account page with the user's own API keys.

Each module below attaches its routes to ``app.pages.blueprint.bp`` when it is
imported; the factory registers the blueprint from here.
"""

from app.pages import account, predict
from app.pages.blueprint import bp

ROUTE_MODULES = (account, predict)  # imported for their routes

__all__ = ["bp"]

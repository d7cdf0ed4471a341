"""The one declaration of which URLs are the API (app/web/paths.py) matches the
routes: page blueprints serve only paths outside the API prefixes, every other
blueprint only paths inside them."""

from app.web.paths import (
    PAGE_BLUEPRINTS,
    cors_resources,
    is_api_path,
    nginx_location_pattern,
)


def test_page_blueprints_and_api_paths_divide_the_url_map_alike(app):
    for rule in app.url_map.iter_rules():
        page = rule.endpoint.split(".")[0] in PAGE_BLUEPRINTS
        assert page != is_api_path(rule.rule), (rule.rule, rule.endpoint)


def test_nginx_and_cors_follow_the_declaration():
    assert nginx_location_pattern() == (
        "^/(api/|v1/|v2|predict|metrics|healthz|readyz|mlflow/|invocations|ping|version)"
    )
    assert set(cors_resources(["https://a.example"])) == {
        "/api/.*",
        "/v1/.*",
        "/v2.*",
        "/mlflow/.*",
        "/invocations.*",
    }

"""Single sign-on against a real OpenID provider: panva's oidc-provider (OpenID
certified) from tests/oidc/, run under Node.js on 127.0.0.1 next to ModelDock on a
live server (PostgreSQL).

The browser signs in through it in Chromium; scripts' client-credentials tokens from
its token endpoint are used on the predict API, including after a key rotation (the
provider restarted with a new first signing key), expired, for another audience, from
another issuer (a second provider) and without the predict scope.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from app import create_app
from app.auth import federation
from app.auth.tokens import TokenVerifier
from app.extensions import db
from app.models import User
from app.web.errors import APIError
from tests.conftest import make_keys, running_app
from tests.live import free_port
from tests.live_server import serve

OIDC = Path(__file__).resolve().parent / "oidc"
NODE = shutil.which("node")
API = "https://modeldock.test/api"
CHROMIUM = "/usr/bin/chromium"
ROW = [[5.1, 3.5, 1.4, 0.2]]
# Skipped on a developer's machine without Node.js or `npm ci` in tests/oidc (make
# test runs it), never in CI.
MISSING = (NODE is None or not (OIDC / "node_modules").is_dir()) and not os.environ.get(
    "CI"
)
slow = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(MISSING, reason="tests/oidc is not installed (make test does)"),
]


def rsa_key(kid: str) -> dict:
    key = RSAKey.generate_key(
        2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"}, private=True
    )
    return key.as_dict(private=True)


class Provider:
    """One oidc-provider process; ``restart`` with other keys rotates them."""

    def __init__(self, tmp: Path, name: str):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys_file = tmp / f"{name}-keys.json"
        self.log = tmp / f"{name}.log"
        self.redirect_uri = ""
        self.process: subprocess.Popen | None = None

    def start(self, keys: list[dict], redirect_uri: str | None = None) -> None:
        self.redirect_uri = redirect_uri or self.redirect_uri
        self.keys_file.write_text(json.dumps({"keys": keys}))
        env = {
            **os.environ,
            "OIDC_PORT": str(self.port),
            "OIDC_KEYS": str(self.keys_file),
            "OIDC_REDIRECT_URI": self.redirect_uri,
        }
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [NODE, "provider.mjs"],
                cwd=OIDC,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("oidc-provider exited:\n" + self.log.read_text())
            try:
                url = self.issuer + "/.well-known/openid-configuration"
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("oidc-provider did not answer:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, keys: list[dict]) -> None:
        self.stop()
        self.start(keys)

    def token(self, resource: str = API, scope: str = "modeldock:predict") -> str:
        """A client-credentials access token from the token endpoint."""
        secret = base64.b64encode(b"modeldock-script:script-secret-for-tests")
        request = urllib.request.Request(
            self.issuer + "/token",
            data=urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "resource": resource,
                    "scope": scope,
                }
            ).encode(),
            headers={"Authorization": "Basic " + secret.decode()},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["access_token"]


class Stack:
    """ModelDock on a live server, its provider, and a second provider."""

    def __init__(self, app, url, keys, provider, other, signing_keys):
        self.app, self.url, self.keys = app, url, keys
        self.provider, self.other, self.signing_keys = provider, other, signing_keys

    def predict(self, credential: str) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + "/api/v1/models/iris/predict",
            data=json.dumps({"instances": ROW}).encode(),
            headers={
                "Authorization": f"Bearer {credential}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, iris):
    tmp = tmp_path_factory.mktemp("oidc")
    signing_keys = {"k1": rsa_key("k1"), "k2": rsa_key("k2")}
    provider, other = Provider(tmp, "idp"), Provider(tmp, "other-idp")
    settings = {
        "MODELDOCK_OIDC_ISSUER": provider.issuer,
        "MODELDOCK_OIDC_CLIENT_ID": "modeldock-web",
        "MODELDOCK_OIDC_CLIENT_SECRET": "web-secret-for-tests",
        "MODELDOCK_OIDC_PROVIDER_NAME": "Test IdP",
        "MODELDOCK_OIDC_SCOPES": "openid profile groups",
        "MODELDOCK_OIDC_ADMIN_VALUES": ["modeldock-admins"],
        "MODELDOCK_OIDC_AUDIENCE": API,
        "MODELDOCK_OIDC_LEEWAY_SECONDS": 0,
        "MODELDOCK_OIDC_JWKS_REFETCH_SECONDS": 0.5,
    }
    with running_app("postgresql", tmp, **settings) as app:
        keys = make_keys(app)
        with app.app_context():
            from app.rollout import versions

            versions.upload_version("iris", "iris.skops", iris.as_skops())
            db.session.commit()
        with serve(app) as address:
            url = f"http://{address}"
            try:
                for idp in (provider, other):
                    # The same keys: only the issuer tells their tokens apart.
                    idp.start([signing_keys["k1"]], url + "/auth/sso/callback")
                yield Stack(app, url, keys, provider, other, signing_keys)
            finally:
                provider.stop()
                other.stop()


# --- scripts: access tokens on the API -------------------------------------------


@pytest.mark.usefixtures("stack")
class TestTokens:
    pytestmark = slow

    def test_a_client_credentials_token_predicts(self, stack):
        status, body = stack.predict(stack.provider.token())
        assert status == 200, body
        assert len(body["predictions"]) == 1
        # API keys still work beside tokens, on the same pipeline.
        assert stack.predict(stack.keys.predict)[0] == 200

    def test_a_token_without_the_predict_scope_is_forbidden(self, stack):
        status, body = stack.predict(stack.provider.token(scope="modeldock:feedback"))
        assert status == 403
        assert body["error"]["code"] == "insufficient_scope"
        assert "token" in body["error"]["message"]

    def test_an_expired_token_is_refused(self, stack):
        token = stack.provider.token(resource="https://modeldock.test/short")
        time.sleep(2.2)  # it lived one second; the test app allows no leeway
        status, body = stack.predict(token)
        assert status == 401
        assert body["error"]["code"] == "token_expired"

    def test_a_token_for_another_audience_is_refused(self, stack):
        status, body = stack.predict(
            stack.provider.token(resource="https://other.test/api")
        )
        assert status == 401
        assert body["error"]["code"] == "token_wrong_audience"

    def test_a_token_from_another_issuer_is_refused(self, stack):
        # Signed with the very same key: only its issuer is wrong.
        status, body = stack.predict(stack.other.token())
        assert status == 401
        assert body["error"]["code"] == "token_wrong_issuer"

    def test_a_rotated_signing_key_is_fetched(self, stack):
        verifier = stack.app.extensions["modeldock.tokens"]
        assert stack.predict(stack.provider.token())[0] == 200
        before = verifier.fetches
        time.sleep(0.6)  # past the refetch floor of the test app
        k1, k2 = stack.signing_keys["k1"], stack.signing_keys["k2"]
        stack.provider.restart([k2, k1])  # k2 signs from now on
        token = stack.provider.token()
        assert (
            json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
            == "k2"
        )
        status, body = stack.predict(token)
        assert status == 200, body
        assert verifier.fetches == before + 1
        # Known keys need no further fetch.
        assert stack.predict(stack.provider.token())[0] == 200
        assert verifier.fetches == before + 1


# --- browsers: sign in through the provider in Chromium --------------------------


def sso_sign_in(browser, stack, login: str):
    from playwright import sync_api

    context = browser.new_context(base_url=stack.url)
    context.set_default_timeout(15_000)
    # The provider's stock pages import a web font: nothing leaves this machine.
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if urllib.parse.urlsplit(route.request.url).hostname == "127.0.0.1"
            else route.abort()
        ),
    )
    page = context.new_page()
    page.goto("/auth/login")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # consent
    sync_api.expect(page.locator(".flash-success")).to_contain_text(
        f"Signed in as {login}"
    )
    return context, page


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api  # a test dependency: missing is a failure

    if not os.access(CHROMIUM, os.X_OK) and not os.environ.get("CI"):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.usefixtures("stack")
class TestBrowser:
    pytestmark = slow

    def test_a_member_of_the_admin_group_signs_in_as_admin(self, stack, browser):
        context, page = sso_sign_in(browser, stack, "ada")
        try:
            response = page.goto("/admin/")
            assert response.status == 200
        finally:
            context.close()
        with stack.app.app_context():
            user = db.session.scalar(select(User).where(User.username == "ada"))
            assert (user.role, user.oidc_subject) == ("admin", "ada")
            assert user.oidc_issuer == stack.provider.issuer

    def test_anyone_else_signs_in_as_user(self, stack, browser):
        context, page = sso_sign_in(browser, stack, "bob")
        try:
            assert page.goto("/admin/").status == 403
        finally:
            context.close()
        with stack.app.app_context():
            user = db.session.scalar(select(User).where(User.username == "bob"))
            assert user.role == "user"
            # A user of single sign-on has no local password.
            assert not user.check_password("any password")


# --- without a provider: settings and the pieces ------------------------------------

SSO = {
    "MODELDOCK_OIDC_ISSUER": "http://127.0.0.1:9/",
    "MODELDOCK_OIDC_CLIENT_ID": "modeldock-web",
    "MODELDOCK_OIDC_PROVIDER_NAME": "Corp IdP",
}


# Without CSRF checks, so that the password itself reaches the view (the page has no
# form, hence no CSRF token, to take).
@pytest.mark.config(**SSO, MODELDOCK_LOCAL_LOGIN=False, WTF_CSRF_ENABLED=False)
def test_local_sign_in_can_be_switched_off(client, keys):
    page = client.get("/auth/login").get_data(as_text=True)
    assert "Sign in with Corp IdP" in page
    assert 'name="password"' not in page
    response = client.post(
        "/auth/login",
        data={"username": "root", "password": "correct horse battery"},
    )
    assert response.status_code == 403
    assert "switched off" in response.get_data(as_text=True)


@pytest.mark.config(**SSO)
def test_the_sign_in_page_offers_both(client):
    page = client.get("/auth/login").get_data(as_text=True)
    assert "Sign in with Corp IdP" in page
    assert 'name="password"' in page


@pytest.mark.config(**SSO)
def test_sign_in_failures_are_readable_pages(client):
    # Port 9 on this machine refuses: the provider is down.
    response = client.get("/auth/sso/login")
    assert response.status_code == 503
    assert "cannot be reached" in response.get_data(as_text=True)
    # A callback that this browser did not start (no state in its session).
    response = client.get("/auth/sso/callback?code=x&state=forged")
    assert response.status_code == 401
    assert "Single sign-on failed" in response.get_data(as_text=True)


def test_without_a_provider_there_is_no_sso_route(client):
    assert client.get("/auth/sso/login").status_code == 404
    page = client.get("/auth/login").get_data(as_text=True)
    assert "Sign in with" not in page


def test_local_login_off_needs_a_provider():
    with pytest.raises(RuntimeError, match="MODELDOCK_LOCAL_LOGIN"):
        create_app({"SECRET_KEY": "x", "MODELDOCK_LOCAL_LOGIN": False})


def test_a_jwt_is_refused_clearly_when_tokens_are_not_configured(client):
    response = client.post(
        "/api/v1/models/iris/predict",
        json={"instances": ROW},
        headers={"Authorization": "Bearer aaa.bbb.ccc"},
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "tokens_not_accepted"


def test_roles_come_from_the_configured_claim():
    config = {
        "MODELDOCK_OIDC_ROLE_CLAIM": "realm_access.roles",
        "MODELDOCK_OIDC_ADMIN_VALUES": ["md-admin"],
        "MODELDOCK_OIDC_USER_VALUES": ["md-user"],
    }
    role = federation.role_for
    assert role({"realm_access": {"roles": ["md-admin"]}}, config) == "admin"
    assert role({"realm_access": {"roles": ["x", "md-user"]}}, config) == "user"
    with pytest.raises(APIError) as refused:
        role({"realm_access": {"roles": ["x"]}}, config)
    assert refused.value.status == 403
    assert role({}, {**config, "MODELDOCK_OIDC_USER_VALUES": []}) == "user"


def test_unknown_key_ids_refetch_at_most_once_per_floor():
    key = RSAKey.generate_key(2048, parameters={"kid": "a"}, private=True)
    issuer = "https://idp.test"
    fetched: list[str] = []

    def fetch(url):
        fetched.append(url)
        if url.endswith("openid-configuration"):
            return {"issuer": issuer, "jwks_uri": issuer + "/jwks"}
        return KeySet([key]).as_dict(private=False)

    verifier = TokenVerifier(issuer, "api", refetch_seconds=0.3, fetch=fetch)

    def token(kid):
        claims = {"iss": issuer, "aud": "api", "sub": "c", "exp": int(time.time()) + 60}
        return jwt.encode({"alg": "RS256", "kid": kid}, claims, key)

    assert verifier.principal(token("a")).token_subject == "c"
    assert verifier.fetches == 1
    time.sleep(0.35)
    for forged in ("b", "c", "d"):  # unknown kids: one refetch, then the floor
        with pytest.raises(APIError) as refused:
            verifier.principal(token(forged))
        assert refused.value.code == "invalid_token"
    assert verifier.fetches == 2


def test_a_verified_token_is_kept_only_until_it_expires():
    key = RSAKey.generate_key(2048, parameters={"kid": "a"}, private=True)
    issuer = "https://idp.test"

    def fetch(url):
        if url.endswith("openid-configuration"):
            return {"issuer": issuer, "jwks_uri": issuer + "/jwks"}
        return KeySet([key]).as_dict(private=False)

    verifier = TokenVerifier(issuer, "api", leeway=0, fetch=fetch)
    claims = {"iss": issuer, "aud": "api", "sub": "c", "exp": int(time.time()) + 1}
    token = jwt.encode({"alg": "RS256", "kid": "a"}, claims, key)
    assert verifier.principal(token) is verifier.principal(token)  # kept
    time.sleep(1.1 + claims["exp"] - time.time())
    with pytest.raises(APIError) as refused:
        verifier.principal(token)
    assert refused.value.code == "token_expired"

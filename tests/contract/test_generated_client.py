"""A typed client generated from the served OpenAPI document works against a real server.

The served schema (/v1/schema/) goes through a real generator (openapi-python-client, no network, no
post hooks); the generated package is imported and EVERY public (/v1/...) and management
(/v1/account/...) operation is called through it against a real gunicorn with real data. Each answer
must have the expected status, parse into its declared model (``parsed`` is not None) and carry no
property the schema does not declare: the generated models keep unknown keys in
``additional_properties``, which must be empty everywhere in the parsed tree (except in the maps the
schema declares as maps, ``additionalProperties: <schema>``, whose values are checked in turn).

Operations needing an id use ids created by earlier calls. Failures are collected, not stopped at:
the assertion message lists every failing operation with its cause."""

from __future__ import annotations

import datetime
import enum
import importlib
import inspect
import io
import json
import pkgutil
import re
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from django.conf import settings
from django.core.management import call_command

from accounts.models import User
from accounts.services.passwords import password_reset_token
from accounts.services.users import email_verification_token
from marketdata.api.views import INDICATOR_VIEWS
from tests.conftest import web_process
from tests.contract.conftest import MANAGEMENT, PUBLIC, Platform, api_group, served_schema

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("purge_broker")]

PACKAGE = "candlestack_contract_client"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
NO_BODY = {204, 304}
METHODS = {"get", "put", "post", "patch", "delete"}
CSV_HEADER = "time,open,high,low,close,volume,volume_24h,closed,filled,samples,partial"


# --- the generated client ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory, django_db_blocker) -> tuple[types.ModuleType, dict]:
    """(the generated package, the schema it was generated from). The generator must not warn: a
    warning means a part of the document it could not turn into code."""
    out = tmp_path_factory.mktemp("generated")
    with django_db_blocker.unblock():
        schema = served_schema()
    (out / "schema.json").write_text(json.dumps(schema))
    (out / "config.json").write_text(json.dumps({"post_hooks": [], "package_name_override": PACKAGE}))
    proc = subprocess.run(
        [str(GENERATOR), "generate", "--path", "schema.json", "--config", "config.json",
         "--meta", "none", "--output-path", PACKAGE],
        cwd=out, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Warning" not in proc.stdout + proc.stderr, "generator warnings:\n" + proc.stdout + proc.stderr
    sys.path.insert(0, str(out))
    try:
        package = importlib.import_module(PACKAGE)
        importlib.import_module(f"{PACKAGE}.api")  # subpackages are imported on demand
        importlib.import_module(f"{PACKAGE}.client")
    finally:
        sys.path.remove(str(out))
    return package, schema


def operation_ids(schema: dict, group: str) -> set[str]:
    return {
        op["operationId"]
        for path, ops in schema["paths"].items()
        if api_group(path) == group
        for method, op in ops.items()
        if method in METHODS
    }


def undeclared(value: Any, where: str, found: dict[str, set[str]]) -> None:
    """Collect, by place in the parsed tree, the keys the schema does not declare."""
    if attrs.has(type(value)):
        name = type(value).__name__
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if field.name != "additional_properties":
                undeclared(item, f"{where}.{field.name}", found)
            elif str(field.type) == "dict[str, Any]":  # no additionalProperties schema: nothing else allowed
                if item:
                    found.setdefault(f"{where} ({name})", set()).update(item)
            else:  # a declared map: its values are models of their own
                for key, sub in item.items():
                    undeclared(sub, f"{where}[{key}]", found)
    elif isinstance(value, list):
        for item in value:
            undeclared(item, f"{where}[]", found)


def _convert(value: Any, annotation: Any) -> Any:
    """A plain value (str, dict, list) as the generated function wants it: enum members and models."""
    for option in typing.get_args(annotation) or (annotation,):
        origin = typing.get_origin(option)
        if origin is list and isinstance(value, list):
            (item_type,) = typing.get_args(option)
            return [_convert(item, item_type) for item in value]
        if isinstance(option, type) and issubclass(option, enum.Enum) and not isinstance(value, enum.Enum):
            return option(value)
    models = [o for o in typing.get_args(annotation) or (annotation,) if hasattr(o, "from_dict")]
    if isinstance(value, dict) and models:  # a oneOf of models: the one that takes the value as it is
        for option in models:
            try:
                model = option.from_dict(value)
            except (KeyError, ValueError, TypeError):
                continue
            if not getattr(model, "additional_properties", None):
                return model
        raise ValueError(f"no model of {annotation} takes {value!r}")
    return value


@attrs.define
class Outcome:
    status: int
    body: Any  # the JSON body (None if not JSON)
    parsed: Any
    text: str = ""


class Api:
    """Calls operations of the generated client by operationId with plain arguments; records, per
    operation, what went wrong."""

    def __init__(self, package: types.ModuleType, base_url: str):
        self.package = package
        self.base_url = base_url
        self.modules = {
            info.name.rsplit(".", 1)[1]: info.name
            for info in pkgutil.walk_packages(package.api.__path__, prefix=f"{package.__name__}.api.")
            if not info.ispkg
        }
        self.called: set[str] = set()
        self.first_kwargs: dict[str, dict] = {}  # operationId -> the arguments of its first call
        self.failures: dict[str, list[str]] = {}

    def client(self, token: str | None = None):
        if token is None:
            return self.package.client.Client(base_url=self.base_url, timeout=httpx.Timeout(30))
        return self.package.client.AuthenticatedClient(
            base_url=self.base_url, token=token, timeout=httpx.Timeout(30)
        )

    def parameter_type(self, operation_id: str, name: str) -> Any:
        module = importlib.import_module(self.modules[operation_id])
        return inspect.signature(module.sync_detailed).parameters[name].annotation

    def call(self, operation_id: str, expect: int, *, auth: str | None, label: str = "", **kwargs) -> Outcome:
        self.called.add(operation_id)
        self.first_kwargs.setdefault(operation_id, kwargs)
        key = f"{operation_id}{f' [{label}]' if label else ''}"
        if operation_id not in self.modules:
            self.failures.setdefault(key, []).append("no such operation in the generated client")
            return Outcome(0, None, None)
        module = importlib.import_module(self.modules[operation_id])
        params = inspect.signature(module.sync_detailed).parameters
        kwargs = {name: _convert(value, params[name].annotation) for name, value in kwargs.items()}
        client = self.client(auth)
        request = module._get_kwargs(**kwargs)
        raw = client.get_httpx_client().request(**request)
        try:
            body = raw.json()
        except ValueError:
            body = None
        excerpt = raw.text[:240]
        problems: list[str] = []
        parsed = None
        try:
            parsed = module._build_response(client=client, response=raw).parsed
        except Exception as exc:  # the generated parser refused the answer
            problems.append(f"{raw.status_code}: does not parse ({type(exc).__name__}: {exc}): {excerpt}")
        if raw.status_code != expect:
            problems.append(f"status {raw.status_code}, expected {expect}: {excerpt}")
        elif not problems and expect not in NO_BODY:
            if parsed is None:
                problems.append(f"{raw.status_code}: parsed is None (undeclared status or media type "
                                f"{raw.headers.get('content-type')}): {excerpt}")  # fmt: skip
            else:
                found: dict[str, set[str]] = {}
                undeclared(parsed, type(parsed).__name__ if not isinstance(parsed, list) else "list", found)
                for where, keys in sorted(found.items()):
                    problems.append(f"undeclared properties in {where}: {sorted(keys)}")
        if problems:
            self.failures.setdefault(key, []).extend(problems)
        return Outcome(raw.status_code, body, parsed, raw.text)

    def probe_errors(self, schema: dict, *, bad_credential: str, organization_scoped: bool) -> None:
        """What a client meets every day, on every operation called so far: a credential that is not
        valid (an expired access token, a mistyped key) answers 401, and an unknown ``X-Organization``
        answers 404, both parsed into their declared problem model."""
        default_security = schema.get("security", [])
        secured = {
            op["operationId"]
            for ops in schema["paths"].values()
            for method, op in ops.items()
            if method in METHODS and any(op.get("security", default_security))
        }
        for operation_id, kwargs in sorted(self.first_kwargs.items()):
            if operation_id in secured:
                self.call(operation_id, 401, auth=bad_credential, label="invalid credential", **kwargs)
            if (
                organization_scoped
                and "x_organization"
                in inspect.signature(
                    importlib.import_module(self.modules[operation_id]).sync_detailed
                ).parameters
            ):
                self.call(operation_id, 404, auth=self.organization_auth, label="unknown X-Organization",
                          **{**kwargs, "x_organization": "no-such-organization"})  # fmt: skip

    organization_auth: str | None = None

    def report(self, schema: dict, group: str) -> str:
        missing = sorted(operation_ids(schema, group) - self.called)
        lines = [f"{op}:\n    " + "\n    ".join(problems) for op, problems in sorted(self.failures.items())]
        if missing:
            lines.append(f"operations of the schema this test does not call (add them): {missing}")
        return "\n".join(lines)


@pytest.fixture
def server(platform, tmp_path, stripe_env):
    """The web process, its billing pointed at the Stripe stand-in (its catalogue synced)."""
    call_command("stripe_sync", stdout=io.StringIO())
    stripe = {
        "STRIPE_API_BASE": stripe_env.base,
        "STRIPE_SECRET_KEY": settings.STRIPE_SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRET,
        # the 401 sweep sends a mistyped key to every operation (160 and more with the indicator
        # catalogue): more than one IP's allowance of failed key authentications per minute, whose
        # 429 has its own tests (tests/accounts); off here so each operation shows its own 401
        "API_KEY_FAILURES_PER_MINUTE": "0",
    }
    with web_process(tmp_path, settings_module="apiplatform.settings", env=stripe) as (base, _proc):
        yield base, tmp_path


# --- the public API ---------------------------------------------------------------------------------
def test_every_public_operation_answers_in_its_declared_models(generated, platform: Platform, server):
    package, schema = generated
    base, _logs = server
    api = Api(package, base)
    key = platform.api_key
    api.call("ping_retrieve", 200, auth=key)
    api.call("limits_retrieve", 200, auth=key)
    coins = api.call("coins_list", 200, auth=key, limit=100)
    listed = [row.get("id") for row in _get(coins, "data") or []]
    coin = "bitcoin" if "bitcoin" in listed else "bitcoin (coins_list listed none)"
    api.call("coins_list", 200, auth=key, label="q=btc", q="btc")
    api.call("coins_retrieve", 200, auth=key, coin_id=coin)
    candles = api.call("candles_list", 200, auth=key, coin_id=coin, timeframe="1h", limit=50)
    if cursor := _get(candles, "next_cursor"):
        api.call("candles_list", 200, auth=key, label="next page", coin_id=coin, timeframe="1h",
                 cursor=cursor)  # fmt: skip
    csv = api.call("candles_csv", 200, auth=key, coin_id=coin, timeframe="1h", limit=50)
    header = csv.parsed.splitlines()[:1] if isinstance(csv.parsed, str) else None
    if csv.status == 200 and header != [CSV_HEADER]:
        api.failures.setdefault("candles_csv", []).append(
            f"the parsed answer is not the CSV text with its header row: {csv.parsed!r:.200}"
        )
    ids = ",".join(listed[:2]) or "bitcoin,ethereum"
    ids_type = api.parameter_type("candles_multi_list", "ids")
    ids_arg = ids.split(",") if "list" in str(ids_type) else ids
    multi = api.call("candles_multi_list", 200, auth=key, ids=ids_arg, timeframe="1h", limit=50)
    if cursor := _get(multi, "next_cursor"):
        api.call("candles_multi_list", 200, auth=key, label="next page", ids=ids_arg, timeframe="1h",
                 limit=50, cursor=cursor)  # fmt: skip
    multi_csv = api.call("candles_multi_csv", 200, auth=key, ids=ids_arg, timeframe="1h", limit=50)
    header = multi_csv.parsed.splitlines()[:1] if isinstance(multi_csv.parsed, str) else None
    if multi_csv.status == 200 and header != ["coin," + CSV_HEADER]:
        api.failures.setdefault("candles_multi_csv", []).append(
            f"the parsed answer is not the CSV text with its header row: {multi_csv.parsed!r:.200}"
        )
    api.call("candles_multi_list", 404, auth=key, label="unknown id", ids=["no-such-coin"]
             if "list" in str(ids_type) else "no-such-coin")  # fmt: skip
    today = datetime.datetime.now(datetime.UTC).date()  # the platform's bitcoin has hourly candles up to now
    api.call("coins_history_retrieve", 200, auth=key, coin_id=coin, date=today)
    api.call("coins_history_retrieve", 404, auth=key, label="no data", coin_id=coin,
             date=datetime.date(2001, 1, 1))  # fmt: skip
    api.call("coins_market_chart_retrieve", 200, auth=key, coin_id=coin)
    api.call("coins_coverage", 200, auth=key, coin_id=coin)
    api.call("global_retrieve", 200, auth=key)
    api.call("global_history", 200, auth=key)
    api.call("coins_market_chart_retrieve", 200, auth=key, label="interval=1h", coin_id=coin, interval="1h")
    indicators = sorted(op for op in operation_ids(schema, PUBLIC) if op.startswith("indicators_"))
    assert indicators == sorted(f"indicators_{name}" for name in INDICATOR_VIEWS), indicators
    for operation_id in indicators:
        api.call(operation_id, 200, auth=key, coin_id=coin, timeframe="1h", limit=20)
    api.call("markets_list", 200, auth=key)
    ids = ",".join(listed[:2]) or "bitcoin,ethereum"
    prices_type = api.parameter_type("prices_retrieve", "ids")
    api.call("prices_retrieve", 200, auth=key, ids=ids.split(",") if "list" in str(prices_type) else ids)
    api.call("rankings_list", 200, auth=key)
    api.call("screener_list", 200, auth=key, timeframe="1h")
    api.call("coins_retrieve", 404, auth=key, label="unknown coin", coin_id="no-such-coin")
    api.call("keys_revoke_leaked", 202, auth=None, label="not a real key",
             body={"key": "cs_live_000000000000_" + "0" * 38, "url": "https://example.com/x"})  # fmt: skip
    api.probe_errors(schema, bad_credential="cs_live_000000000000_" + "0" * 38, organization_scoped=False)
    report = api.report(schema, PUBLIC)
    if report:
        pytest.fail("public API through the generated client:\n" + report, pytrace=False)


# --- the management API -----------------------------------------------------------------------------
def _emailed_token(log_dir: Path, pattern: str) -> str | None:
    """The last token the web process emailed (console email backend: the gunicorn log)."""
    found = re.findall(pattern, "".join(p.read_text() for p in log_dir.glob("gunicorn-*.log")))
    return found[-1] if found else None


def test_every_management_operation_answers_in_its_declared_models(generated, platform: Platform, server):
    package, schema = generated
    base, logs = server
    api = Api(package, base)
    password = "a long contract passphrase"
    api.call("account_signup", 202, auth=None, body={
        "email": "ada@example.test", "password": password, "organization_name": "Ada Labs"})  # fmt: skip
    login = api.call("account_token_obtain", 200, auth=None,
                     body={"email": "ada@example.test", "password": password})  # fmt: skip
    access = _get(login, "access") or "login gave no access token"
    refresh = _get(login, "refresh") or "login gave no refresh token"
    api.call("account_token_refresh", 200, auth=None, body={"refresh": refresh})
    api.call("account_verify_email_resend", 202, auth=access)
    user = User.objects.filter(email="ada@example.test").first()
    verification = email_verification_token(user=user) if user else "no-user"
    api.call("account_verify_email_link", 200, auth=None, token=verification)
    api.call("account_verify_email", 200, auth=None, body={"token": verification})
    api.call("account_verify_email_resend", 200, auth=access, label="already verified")
    api.call("account_me", 200, auth=access)
    api.call("account_organization", 200, auth=access)
    api.call("account_organization_update", 200, auth=access, body={"name": "Ada Laboratories"})
    api.call("account_usage", 200, auth=access)
    api.call("account_usage_failures", 200, auth=access)

    # invitations: one accepted (then the member's role changed and the member removed), one revoked
    invited = api.call("account_invitation_create", 201, auth=access,
                       body={"email": "grace@example.test", "role": "developer"})  # fmt: skip
    invitation_id = _get(invited, "id")
    api.call("account_invitations_list", 200, auth=access)
    api.call("account_invitation", 200, auth=access, invitation_id=invitation_id)
    invitation_token = _emailed_token(logs, r'"token": "([A-Za-z0-9_-]{20,})"')
    api.call("account_signup", 202, auth=None, label="invited user, own organization", body={
        "email": "grace@example.test", "password": password, "organization_name": "Grace Co"})  # fmt: skip
    grace = api.call("account_token_obtain", 200, auth=None, label="invited user",
                     body={"email": "grace@example.test", "password": password})  # fmt: skip
    api.call("account_invitation_accept", 201, auth=_get(grace, "access"),
             body={"token": invitation_token or "no invitation email in the web log"})  # fmt: skip
    members = api.call("account_members_list", 200, auth=access)
    member_id = next((m.get("id") for m in members.body or [] if m.get("email") == "grace@example.test"), 0)
    api.call("account_member", 200, auth=access, member_id=member_id)
    api.call("account_member_role_change", 200, auth=access, member_id=member_id, body={"role": "admin"})
    api.call("account_member_remove", 200, auth=access, member_id=member_id)
    api.call("account_organization_leave", 409, auth=access, label="the last owner stays")
    withdrawn = api.call("account_invitation_create", 201, auth=access, label="to revoke",
                         body={"email": "linus@example.test", "role": "billing"})  # fmt: skip
    api.call("account_invitation_revoke", 204, auth=access, invitation_id=_get(withdrawn, "id"))
    api.call("account_invitation", 404, auth=access, label="withdrawn", invitation_id=_get(withdrawn, "id"))

    # keys: create (a secret key and a browser key), list, read, rotate, revoke the replaced key
    created = api.call("account_key_create", 201, auth=access, label="secret",
                       body={"name": "production", "type": "secret"})  # fmt: skip
    api.call("account_key_create", 201, auth=access, label="browser", body={
        "name": "dashboard", "type": "browser", "allowed_origins": ["https://app.example.com"]})  # fmt: skip
    key_id = _get(created, "key_id")
    api.call("account_keys_list", 200, auth=access)
    api.call("account_key", 200, auth=access, key_id=key_id)
    api.call("account_key_rotate", 201, auth=access, key_id=key_id, body={})
    api.call("account_key_revoke", 200, auth=access, key_id=key_id)
    api.call("account_audit_events", 200, auth=access)

    # billing (Stripe stand-in): the overview, a checkout, the portal, invoices
    api.call("account_billing", 200, auth=access)
    api.call("account_billing_portal", 409, auth=access, label="nothing bought yet")
    api.call("account_billing_checkout", 201, auth=access, body={"plan": "developer"})
    api.call("account_billing_portal", 201, auth=access)
    api.call("account_billing_invoices", 200, auth=access, limit=5)

    api.call("account_key", 404, auth=access, label="unknown key", key_id="nokey")

    # alerts and webhooks (docs/alerts.md): an endpoint (its secret once), an alert, a test delivery
    # (hooks.example.com does not resolve here: a failed attempt, answered 200), a replay
    endpoint = api.call("webhook_endpoint_create", 201, auth=access,
                        body={"url": "https://hooks.example.com/contract"})  # fmt: skip
    endpoint_id = _get(endpoint, "id")
    api.call("webhook_endpoints_list", 200, auth=access)
    api.call("webhook_endpoint", 200, auth=access, endpoint_id=endpoint_id)
    api.call("webhook_endpoint_update", 200, auth=access, endpoint_id=endpoint_id, body={"description": "c"})
    api.call("webhook_endpoint_rotate_secret", 200, auth=access, endpoint_id=endpoint_id)
    alert = api.call("alert_create", 201, auth=access, body={
        "coin": "bitcoin", "endpoint_id": endpoint_id,
        "condition": {"type": "indicator", "indicator": "rsi", "timeframe": "1h", "direction": "above",
                      "level": 70}})  # fmt: skip
    alert_id = _get(alert, "id")
    api.call("alerts_list", 200, auth=access)
    api.call("alert", 200, auth=access, alert_id=alert_id)
    api.call("alert_update", 200, auth=access, alert_id=alert_id, body={"active": False})
    tested = api.call("webhook_endpoint_test", 200, auth=access, endpoint_id=endpoint_id)
    api.call("deliveries_list", 200, auth=access)
    api.call("delivery", 200, auth=access, delivery_id=_get(tested, "id"))
    api.call("delivery_replay", 202, auth=access, delivery_id=_get(tested, "id"))
    api.call("webhook_endpoint_delete", 409, auth=access, label="in use", endpoint_id=endpoint_id)
    api.call("alert_delete", 204, auth=access, alert_id=alert_id)
    api.call("webhook_endpoint_delete", 204, auth=access, endpoint_id=endpoint_id)

    # sessions and passwords: change (ends the other session), reset (ends all), logout, everywhere
    credentials = {"email": "ada@example.test", "password": password}
    api.call("account_token_obtain", 200, auth=None, label="another session", body=credentials)
    new_password = "another contract passphrase"
    api.call("account_password_change", 200, auth=access,
             body={"current_password": password, "new_password": new_password})  # fmt: skip
    api.call("account_password_reset", 202, auth=None, body={"email": "ada@example.test"})
    user = User.objects.filter(email="ada@example.test").first()
    reset = password_reset_token(user=user) if user else "no-user"
    api.call(
        "account_password_reset_confirm", 204, auth=None, body={"token": reset, "new_password": password}
    )
    api.call("account_me", 401, auth=access, label="after the reset")
    one = _get(
        api.call("account_token_obtain", 200, auth=None, label="after reset", body=credentials), "access"
    )
    api.call("account_logout", 204, auth=one)
    two = _get(
        api.call("account_token_obtain", 200, auth=None, label="to log out", body=credentials), "access"
    )
    api.call("account_logout_all", 200, auth=two)
    access = _get(
        api.call("account_token_obtain", 200, auth=None, label="probes", body=credentials), "access"
    )
    api.organization_auth = access
    api.probe_errors(schema, bad_credential="not-a-valid-jwt", organization_scoped=True)
    report = api.report(schema, MANAGEMENT)
    if report:
        pytest.fail("management API through the generated client:\n" + report, pytrace=False)


def _get(outcome: Outcome, *path: str) -> Any:
    """A value of an answer's JSON body (None if the answer has no such value)."""
    value = outcome.body
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value

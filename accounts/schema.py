"""OpenAPI (drf-spectacular) of the accounts app: the API-key security schemes, and the errors of the
management API (``/v1/account/…``), documented once.

Every management view carries :class:`ManagementSchema` (:class:`OrganizationScopedSchema` through
``accounts.tenancy.OrganizationScopedView``). It derives the errors operations share from the view
itself, so no operation can forget one:

* authenticated with a JWT: ``401 not-authenticated`` (no access token, an expired or invalid one);
* a request body: ``400 validation-error`` (with ``errors``) and ``bad-request`` (not JSON), and
  ``415 unsupported-media-type``;
* organization-scoped: the ``X-Organization`` header, ``400 organization-required``, ``404 not-found``
  (unknown ``X-Organization``; unknown object when the path names one) and ``403 role-forbidden``
  when the method's permission (``required_permissions``) is not held by every role.

What only one operation can answer is declared where it is raised, in ``extend_schema(responses=…)``,
as registered problem types: ``409: p.LAST_OWNER``, a list of them, or :func:`problem` with a more
precise "when". Every error response is ``application/problem+json``: the problem body
(``apiplatform.schema.Problem``, or a subclass below declaring the extra members its types carry),
a description naming each problem type, and one example per type. A declared error response that is
not a problem type is refused when the schema is generated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import password_validation
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.plumbing import force_instance
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
)
from rest_framework import serializers
from rest_framework_simplejwt.authentication import JWTAuthentication

from accounts import problems as p
from accounts import roles
from accounts.names import ORGANIZATION_NAME_HELP, ORGANIZATION_NAME_PATTERN
from accounts.serializers import SignupIn
from apiplatform.problems import (
    BAD_REQUEST,
    NOT_AUTHENTICATED,
    NOT_FOUND,
    RATE_LIMITED,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_ERROR,
    ProblemType,
    problem_body,
)
from apiplatform.schema import NOT_BLANK_NO_NUL, PROBLEM_CONTENT_TYPE, Problem, ProblemAutoSchema
from apiplatform.serializers import PatchSerializer


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = ["ApiKeyBearer", "ApiKeyHeader"]
    priority = 1

    def get_security_requirement(self, auto_schema):
        # Two requirement objects: either scheme satisfies the operation. One object naming both
        # would mean "send both" (OpenAPI 3: the schemes of one requirement object are ANDed).
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema):
        description = (
            "A Candlestack API key (`cs_live_…` or `cs_test_…`), created in the account API "
            "(`POST /v1/account/keys`). Send it either way; failures are `api-key-*` problems."
        )
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "cs_live_<12>_<38>",
                "description": description,
            },
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": description},
        ]


class SessionJWTScheme(SimpleJWTScheme):
    """``accounts.session_auth.SessionJWTAuthentication``: the same bearer JWT scheme (``jwtAuth``)."""

    target_class = "accounts.session_auth.SessionJWTAuthentication"


def password_rules(password: dict[str, Any]) -> None:
    """Django's password validators (AUTH_PASSWORD_VALIDATORS) on a new password's schema: a minimum
    length and not only digits are schema; "not a common password" and "not too similar to the
    email" are not (400)."""
    for validator in password_validation.get_default_password_validators():
        if isinstance(validator, password_validation.MinimumLengthValidator):
            password["minLength"] = max(password.get("minLength", 0), validator.min_length)
        if isinstance(validator, password_validation.NumericPasswordValidator):
            password["pattern"] = NOT_ONLY_DIGITS
    password["description"] = (
        "Taken as typed (not trimmed). Also refused (400 `validation-error`): a common password, or "
        "one too similar to the email address."
    )


class NewPasswordBodyScheme(OpenApiSerializerExtension):
    """``accounts.serializers.NewPasswordIn`` (password change, reset): the rules of ``new_password``."""

    target_class = "accounts.serializers.NewPasswordIn"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            password_rules(schema["properties"]["new_password"])
        return schema


class SignupBodyScheme(OpenApiSerializerExtension):
    """``accounts.serializers.SignupIn``: ``organization_name`` unless ``invitation_token`` (the
    serializer's cross-field rule), as ``anyOf`` two complete shapes (a generated client gets a typed
    model for each) that differ only in which of the two is required. An empty or blank value counts
    as absent (the serializer trims and ignores it), hence the non-blank pattern."""

    target_class = "accounts.serializers.SignupIn"

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction != "request":
            return schema
        # Django's password validators (AUTH_PASSWORD_VALIDATORS): a minimum length and not only digits
        # are schema; "not a common password" and "not too similar to the email" are not (400).
        password_rules(schema["properties"]["password"])
        shapes = []
        for name, title in (
            ("organization_name", "SignupNewOrganization"),
            ("invitation_token", "SignupByInvitation"),
        ):
            shape = copy.deepcopy(schema)
            shape["title"] = title
            shape["required"] = sorted({*shape.get("required", []), name})
            shape["properties"][name].update({"minLength": 1, "pattern": NON_BLANK})
            shape["properties"][name].pop("default", None)
            org_name = {"type": "string", "maxLength": 200, "description": ORGANIZATION_NAME_HELP}
            if name == "organization_name":
                org_name.update(minLength=1, pattern=ORGANIZATION_NAME_PATTERN)
            else:  # joining by invitation: the name is not used
                org_name.update(default="", description="Not used when joining by invitation.")
            shape["properties"]["organization_name"] = org_name
            shapes.append(shape)
        return {"anyOf": shapes}


NON_BLANK = NOT_BLANK_NO_NUL  # at least one character that is not white space (and no NUL)
NOT_ONLY_DIGITS = "^[^\\u0000]*[^\\d\\u0000][^\\u0000]*$"  # some character that is not a digit (and no NUL)


# --- the X-Organization header ---------------------------------------------------------------------------
ORGANIZATION_HEADER = "X-Organization"

ORGANIZATION_PARAMETER = OpenApiParameter(
    name=ORGANIZATION_HEADER,
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Slug of the organization to act on. Required when you belong to several "
        "(`400 organization-required`); a slug that is not one of yours is `404 not-found`."
    ),
)


# --- problem bodies with extra members ---------------------------------------------------------------------
class RoleForbiddenProblem(Problem):
    required_permission = serializers.CharField(
        help_text="The permission your role lacks (`owner` for the owner rules), see docs/accounts.md."
    )


class RateLimitedProblem(Problem):
    retry_after = serializers.IntegerField(help_text="Seconds to wait, as in the `Retry-After` header.")


class KeyConflictProblem(Problem):
    successor_key_id = serializers.CharField(
        required=False, help_text="key-already-rotated only: the key id of the live replacement."
    )


_BODIES: dict[str, type[Problem]] = {
    p.ROLE_FORBIDDEN.slug: RoleForbiddenProblem,
    RATE_LIMITED.slug: RateLimitedProblem,
    p.KEY_ALREADY_ROTATED.slug: KeyConflictProblem,
}
_EXAMPLE_EXTRAS: dict[str, dict[str, Any]] = {
    VALIDATION_ERROR.slug: {"errors": [{"parameter": "name", "detail": "This field is required."}]},
    RATE_LIMITED.slug: {"retry_after": 30},
    p.KEY_ALREADY_ROTATED.slug: {"successor_key_id": "Q2mZpA4fJx0c"},
}


@dataclass(frozen=True)
class Documented:
    """One problem type an operation can answer, and when."""

    problem: ProblemType
    when: str


def problem(problem_type: ProblemType, when: str) -> Documented:
    """A declared problem type with an operation-specific "when" (default: the type's meaning)."""
    return Documented(problem_type, when)


def _documented(value: Any) -> list[Documented] | None:
    """The problem types of a declared response, or None when it is not made of problem types."""
    items = value if isinstance(value, list | tuple) else [value]
    out = []
    for item in items:
        if isinstance(item, ProblemType):
            out.append(Documented(item, item.description))
        elif isinstance(item, Documented):
            out.append(item)
        else:
            return None
    return out or None


class ManagementSchema(ProblemAutoSchema):
    """The management API's schema class: adds the shared errors, renders every error as a problem."""

    organization_scoped = False

    # -- what the view itself implies --
    def _needs_access_token(self) -> bool:
        return any(isinstance(a, JWTAuthentication) for a in self.view.get_authenticators())

    def _has_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None

    def implied_problems(self) -> list[Documented]:
        found: list[Documented] = []
        if self._needs_access_token():
            found.append(
                problem(
                    NOT_AUTHENTICATED,
                    "No access token, or an expired or invalid one: refresh it "
                    "(`POST /v1/account/token/refresh`) or log in again.",
                )
            )
        if self._has_body():
            found += [
                problem(VALIDATION_ERROR, "A member of the body is invalid; `errors` names each one."),
                problem(BAD_REQUEST, "The body is not valid JSON."),
                problem(UNSUPPORTED_MEDIA_TYPE, "The body is not `application/json`."),
            ]
        return found

    # -- request body --
    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        # A PATCH body (PatchSerializer) has no required member but must not be empty (minProperties: 1), and
        # the sign-up body is an anyOf (drf-spectacular sees no required member in it): the body itself
        # is required, so that "no body" is as invalid in the schema as on the server.
        # Likewise a oneOf of bodies (PolymorphicProxySerializer) is required when each of them is.
        instance = force_instance(serializer)
        if isinstance(instance, PatchSerializer | SignupIn):
            required = True
        elif isinstance(instance, PolymorphicProxySerializer) and isinstance(instance.serializers, list):
            required = all(
                any(field.required for field in force_instance(member).fields.values())
                for member in instance.serializers
            )
        return schema, required

    # -- responses --
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        declared = self.get_response_serializers()
        problems = self.implied_problems()
        if isinstance(declared, dict):
            successes: dict[Any, Any] = {}
            for code, value in declared.items():
                status = int(code[0] if isinstance(code, tuple) else code)
                listed = _documented(value)
                if listed is not None:
                    problems += listed
                elif status >= 400:
                    raise ValueError(f"{self.method} {self.path}: declare error {status} as problem types")
                else:
                    successes[code] = value
            responses = self._success_bodies(successes, direction)
        else:
            responses = super()._get_response_bodies(direction)
        by_status: dict[int, list[Documented]] = {}
        for documented in problems:
            listed_here = by_status.setdefault(documented.problem.status, [])
            if documented.problem not in [d.problem for d in listed_here]:
                listed_here.append(documented)
        for status in sorted(by_status):
            responses[str(status)] = self._problem_response(status, by_status[status])
        return responses

    def _success_bodies(self, declared: dict[Any, Any], direction: Any) -> dict[str, Any]:
        # drf-spectacular's own handling of a responses dict (AutoSchema._get_response_bodies)
        responses: dict[str, Any] = {}
        for code, serializer in declared.items():
            if isinstance(code, tuple):
                code, media_types = str(code[0]), code[1:]
            else:
                code, media_types = str(code), None
            content = self._get_response_for_code(serializer, code, media_types, direction)
            if code in responses:
                responses[code]["content"].update(content["content"])
            else:
                responses[code] = content
        return responses

    def _problem_response(self, status: int, documented: Iterable[Documented]) -> dict[str, Any]:
        documented = list(documented)
        bodies = {_BODIES[d.problem.slug] for d in documented if d.problem.slug in _BODIES}
        if len(bodies) > 1:
            raise ValueError(f"{self.method} {self.path}: {status} mixes problem bodies {bodies}")
        body = bodies.pop() if bodies else Problem
        description = "\n".join(f"- `{d.problem.slug}`: {d.when}" for d in documented)
        examples = [
            OpenApiExample(
                d.problem.slug,
                value=self._example(d.problem),
                response_only=True,
                status_codes=[str(status)],
            )
            for d in documented
        ]
        response = OpenApiResponse(body, description=description, examples=examples)
        return self._get_response_for_code(response, str(status), (PROBLEM_CONTENT_TYPE,))

    def _example(self, problem_type: ProblemType) -> dict[str, Any]:
        extra = dict(_EXAMPLE_EXTRAS.get(problem_type.slug, {}))
        if problem_type is p.ROLE_FORBIDDEN:
            extra["required_permission"] = self._permission() or "owner"
        return problem_body(
            problem_type,
            instance=self.path,
            request_id="5f0c3f6f0b8e4f2f9d0c7d1e2a3b4c5d",
            extra=extra,
        )

    def _permission(self) -> str | None:
        return None


class OrganizationScopedSchema(ManagementSchema):
    """``accounts.tenancy.OrganizationScopedView``: the tenant header and its errors, and the role."""

    organization_scoped = True

    def _permission(self) -> str | None:
        required: dict[str, str] = getattr(self.view, "required_permissions", {})
        return required.get(self.method)

    def implied_problems(self) -> list[Documented]:
        found = super().implied_problems()
        found.append(
            problem(
                p.ORGANIZATION_REQUIRED,
                "You belong to several organizations and sent no `X-Organization` header.",
            )
        )
        permission = self._permission()
        if permission is None or not all(
            roles.has_permission(role, permission) for role in roles.ROLE_PERMISSIONS
        ):
            found.append(
                problem(
                    p.ROLE_FORBIDDEN,
                    f"Your role lacks `{permission}`"
                    + (" (or an owner rule applies)." if permission in _OWNER_RULED else "."),
                )
            )
        what = "No organization with the `X-Organization` slug among yours, or you belong to none"
        if "{" in self.path:
            what += "; or the path names no such object in the organization (another one's objects included)"
        found.append(problem(NOT_FOUND, what + "."))
        return found

    def get_override_parameters(self):
        return [ORGANIZATION_PARAMETER, *super().get_override_parameters()]


_OWNER_RULED = {roles.MEMBERS_MANAGE, roles.INVITATIONS_MANAGE}

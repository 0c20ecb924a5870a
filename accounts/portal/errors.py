"""What a page shows when something goes wrong: one human sentence and the request id.

Services raise the management API's exceptions (``ProblemError``, DRF ``ValidationError``,
``PermissionDenied``); :func:`sentence` turns any of them into the sentence a person reads, and
:func:`field_errors` spreads a ``ValidationError`` over a form's fields."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework import exceptions as drf

from apiplatform.exceptions import flatten_errors
from apiplatform.problems import ProblemError


def sentence(exc: Exception) -> str:
    """The human sentence for a service's refusal."""
    if isinstance(exc, ProblemError):
        return str(exc.detail)
    if isinstance(exc, drf.ValidationError):
        parts = [e["detail"] for e in flatten_errors(exc.detail)]
        text = "; ".join(parts) or "The form has an error."
        return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    if isinstance(exc, drf.APIException):
        return str(exc.detail)
    return str(exc) or "Something went wrong."


def field_errors(form: forms.Form, exc: drf.ValidationError) -> None:
    """Attach a service's ``ValidationError`` to the form: errors of known fields next to them, the
    rest at the top."""
    for item in flatten_errors(exc.detail):
        name = item["parameter"].split(".")[0]
        message = item["detail"][:1].upper() + item["detail"][1:]
        form.add_error(name if name in form.fields else None, message)


def error_page(request: HttpRequest, message: str, *, status: int, title: str = "") -> HttpResponse:
    titles = {400: "That did not work", 403: "Not allowed", 404: "Not found", 503: "Try again later"}
    context = {"title": title or titles.get(status, "Error"), "message": message, "status": status}
    return render(request, "portal/error.html", context, status=status)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: a refused form post (no or wrong CSRF token) gets a page, not Django's
    debug text."""
    return error_page(
        request,
        "This form could not be accepted: it was not sent by this site's page (its security token is "
        "missing or out of date). Reload the page and try again.",
        status=403,
        title="Form refused",
    )

"""Documentation of the problem types every error response refers to (its ``type`` URI)."""

from dataclasses import asdict

from django.http import Http404, JsonResponse
from django.views.decorators.http import require_GET

from apiplatform import problems


@require_GET
def problem_types(request):
    return JsonResponse(
        {
            "problems": [
                asdict(p) | {"type": problems.type_uri(p.slug)} for p in problems.registered().values()
            ]
        }
    )


@require_GET
def problem_type(request, slug: str):
    problem = problems.registered().get(slug)
    if problem is None:
        raise Http404(slug)
    return JsonResponse(asdict(problem) | {"type": problems.type_uri(slug)})

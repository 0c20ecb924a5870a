"""The stream server's ASGI application (uvicorn ``apiplatform.asgi:application``, docs/stream.md).

Django's ASGI handler, with one difference for ``GET /v1/stream``: the request (middleware, gateway,
view) runs as usual in its own thread, bounded to ``STREAM_OPEN_CONCURRENCY`` at a time (an opening
storm queues here instead of exhausting the Redis and database pools), and once the view has
answered an :class:`apiplatform.streaming.EventStreamResponse` the handler sends its headers, ends
the request (its thread and database connection go back) and then writes the events straight to
the connection (:func:`apiplatform.streaming.serve`): no thread per open stream, and no pass through
Django's response iterator for every chunk.
"""

import asyncio
import contextvars
import os

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")

import django

django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from apiplatform import streaming  # noqa: E402 - needs the apps loaded
from apiplatform.startup import check_static_files  # noqa: E402 - needs the settings loaded

STREAM_PATH = "/v1/stream"

#: Where ``send_response`` leaves an event stream's body for ``__call__`` to serve after the request.
_deferred_body: contextvars.ContextVar[list | None] = contextvars.ContextVar("deferred_body", default=None)


class StreamServerHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self._opening: asyncio.Semaphore | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != STREAM_PATH:
            return await super().__call__(scope, receive, send)
        if self._opening is None:
            self._opening = asyncio.Semaphore(settings.STREAM_OPEN_CONCURRENCY)
        deferred: list = []
        token = _deferred_body.set(deferred)
        try:
            async with self._opening, ThreadSensitiveContext():
                await self.handle(scope, receive, send)
        finally:
            _deferred_body.reset(token)
        if deferred:
            await streaming.serve(deferred[0], receive, send)

    async def send_response(self, response, send):
        deferred = _deferred_body.get()
        if deferred is None or not isinstance(response, streaming.EventStreamResponse):
            return await super().send_response(response, send)
        headers = [
            (header.encode("ascii") if isinstance(header, str) else bytes(header),
             value.encode("latin1") if isinstance(value, str) else bytes(value))
            for header, value in response.items()
        ]  # fmt: skip
        headers += [
            (b"Set-Cookie", c.output(header="").encode("ascii").strip()) for c in response.cookies.values()
        ]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        deferred.append(response.events)


application = StreamServerHandler()

check_static_files()

"""The web UI of ``flowrun serve``, at ``/ui``: server-rendered pages over the engine's API.

    GET  /ui/runs                 runs list: filters, counts by status, pages, live (SSE)
    GET  /ui/runs/{id}            run page: DAG, loop iterations, timeline, each action's record
    GET  /ui/flows                every flow of the folder, with its problems at their lines
    GET  /ui/events               server-sent events: the runs (or one run, ?run=) changed
    POST /ui/runs/{id}/rerun | resume | cancel | replay      operator actions
    GET/POST /ui/login, POST /ui/logout

Modules: ``session`` (who may: the admin token, a session cookie, CSRF), ``pages`` (the GET
pages), ``actions`` (the POSTs), ``events`` (SSE), ``dag`` and ``timeline`` (layouts the
templates draw). Templates, CSS and JS are files of this package: nothing is fetched from
elsewhere. Every value a template prints is redacted before it is escaped, and every page
is redacted again as a whole, so no secret the process knows reaches a browser.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from engine.errors import FlowrunError, Refused

from .session import COOKIE, Ended, Sessions, Throttle

HERE = Path(__file__).parent
log = logging.getLogger("flowrun.listener")
MAX_FORM = 65_536  # bytes of a form body
SHOWN = 20_000  # characters of a value shown inline; the rest is downloadable
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
Handler = Callable[[Request], Awaitable[Response]]
# characters a value may hold that a browser would not show as themselves: C0/C1 controls (an
# ANSI escape), bidi overrides and isolates (a dedupe key that reads backwards, text spilling its
# direction onto what follows it on the line), zero-width and byte-order marks, and lone surrogates
# (a file name of the flows folder whose bytes are not UTF-8: no page holding one could be sent)
_HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f"
                     "\u202a-\u202e\u2060-\u2064\u2066-\u2069\ud800-\udfff\ufeff\ufff9-\ufffb]")


def visible(text: str) -> str:
    """``text`` with every character that would not show as itself written as its escape (``\\u202e``)."""
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def shown(value: Any) -> tuple[str, bool]:
    """(the value as indented JSON, cut to SHOWN characters; whether it was cut)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        except ValueError:  # a cycle cannot come from the store; NaN is written as JavaScript does
            text = str(value)
    return (text, False) if len(text) <= SHOWN else (text[:SHOWN], True)


class UI:
    def __init__(self, listener: Any):
        from jinja2 import Environment, FileSystemLoader, StrictUndefined
        from markupsafe import Markup

        self.listener = listener
        self.engine = listener.engine
        self.redact = listener.redact
        self._sessions: Sessions | None = None
        self.throttle: Throttle = listener.guesses  # one counter with the admin API's bearer tokens
        self._markup = Markup
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                               undefined=StrictUndefined, finalize=self._finalize, trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters["shown"] = shown
        self.env.filters["when"] = _when
        self.env.filters["ms"] = _ms
        self.env.globals["urlencode"] = lambda d: urlencode({k: v for k, v in d.items() if v not in (None, "")})

    def _finalize(self, value: Any) -> Any:
        """Every printed value: redacted as text, before autoescaping turns quotes into entities,
        and with what would not show as itself (controls, bidi overrides) shown as escapes."""
        if value is None:
            return ""
        if isinstance(value, self._markup):
            return value  # template-made markup only: no value is ever marked safe
        return visible(self.redact(value if isinstance(value, str) else str(value)))

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:
            self._sessions = Sessions(self.engine.server_key("ui-session"), self.listener.options.admin_token,
                                      ended=Ended(self.engine.store))
        return self._sessions

    # -- responses --------------------------------------------------------------------------
    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        who = getattr(request.state, "who", None)
        context.setdefault("csrf", self.sessions.csrf(who) if who else "")
        context.setdefault("who", who)
        context.setdefault("nav", "")
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(self.redact(html), status_code=status, headers=HEADERS)

    def refuse(self, request: Request, status: int, message: str) -> Response:
        return self.render(request, "message.html", status=status, title=f"{status}", message=message)

    # -- guards -----------------------------------------------------------------------------
    def page(self, handler: Handler, *, html: bool = True) -> Handler:
        """A GET for signed-in users: others are sent to the login form (or get 401)."""
        async def endpoint(request: Request) -> Response:
            if not self.sessions.enabled:
                return self.refuse(request, 503, "The web UI needs an admin token: set FLOWRUN_ADMIN_TOKEN "
                                                 "(or let `flowrun serve` make one) and restart.")
            who = self.who(request)
            if isinstance(who, Response):
                return who
            if who is None:
                if not html:
                    return Response("sign in first: Authorization: Bearer <admin token>, or the login form",
                                    status_code=401, headers={"WWW-Authenticate": "Bearer", **HEADERS})
                return RedirectResponse("/ui/login?" + urlencode({"next": _local(request.url.path)}), 303,
                                        headers=HEADERS)
            request.state.who = who
            return await self._guarded(request, handler)
        return endpoint

    def post(self, handler: Handler) -> Handler:
        """A POST for signed-in users carrying the CSRF token of their session."""
        async def endpoint(request: Request) -> Response:
            if not self.sessions.enabled:
                return self.refuse(request, 503, "The web UI needs an admin token.")
            who = self.who(request)
            if isinstance(who, Response):
                return who
            if who is None:
                return self.refuse(request, 401, "Sign in first.")
            request.state.who = who
            form = await read_form(request)
            if form is None:
                return self.refuse(request, 413, f"The form is larger than {MAX_FORM} bytes.")
            if not self.sessions.csrf_ok(who, form.get("csrf")):
                return self.refuse(request, 403, "This form has expired or did not come from this page "
                                                 "(CSRF token missing or wrong). Go back, reload and try again.")
            request.state.form = form
            return await self._guarded(request, handler)
        return endpoint

    def who(self, request: Request) -> str | None | Response:
        """Who is asking: 'bearer', a session nonce, or None (not signed in). A bearer token in
        the request counts against its address like the login form's tokens (one counter):
        a wrong one is refused (401), and past TRIES wrong ones the address waits (429)."""
        if not self.sessions.offers_bearer(request.headers):
            return self.sessions.who(request)
        client = request.client.host if request.client else "?"
        wait = self.throttle.wait(client)
        if wait:
            return Response(f"too many wrong tokens from {client}; try again in {int(wait) + 1} s",
                            status_code=429, headers={"Retry-After": str(int(wait) + 1), **HEADERS})
        if not self.sessions.bearer(request.headers):
            self.throttle.failed(client)
            log.warning("web UI bearer token refused", extra={"event": "ui_login_refused", "client": client})
            return Response("that is not the admin token", status_code=401,
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"', **HEADERS})
        self.throttle.succeeded(client)
        return "bearer"

    def secure(self, request: Request) -> bool:
        """Cookies get the Secure flag when the browser reached us over https: directly, or
        through a TLS-terminating proxy in front of ``--base-url https://...``."""
        base = (self.listener.options.base_url or "").strip().lower()
        return request.url.scheme == "https" or base.startswith("https://")

    async def _guarded(self, request: Request, handler: Handler) -> Response:
        try:
            return await handler(request)
        except Refused as exc:
            return self.refuse(request, exc.status, exc.message)
        except FlowrunError as exc:
            return self.refuse(request, 409, str(exc))
        except Exception:
            log.exception("web UI error", extra={"event": "ui_error"})
            return self.refuse(request, 500, "Something went wrong on the server (see its log).")

    # -- the app ----------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        from . import actions, events, pages

        p = pages.Pages(self)
        a = actions.Actions(self)
        return [
            Route("/ui", lambda r: RedirectResponse("/ui/runs", 303), methods=["GET"]),
            Route("/ui/", lambda r: RedirectResponse("/ui/runs", 303), methods=["GET"]),
            Route("/ui/login", self.login_form, methods=["GET"]),
            Route("/ui/login", self.login, methods=["POST"]),
            Route("/ui/logout", self.post(self.logout), methods=["POST"]),
            Route("/ui/runs", self.page(p.runs), methods=["GET"]),
            Route("/ui/runs/{run_id}", self.page(p.run), methods=["GET"]),
            Route("/ui/runs/{run_id}/value/{what}", self.page(p.value, html=False), methods=["GET"]),
            Route("/ui/runs/{run_id}/rerun", self.page(p.rerun_plan), methods=["GET"]),
            Route("/ui/runs/{run_id}/rerun", self.post(a.rerun), methods=["POST"]),
            Route("/ui/runs/{run_id}/resume", self.post(a.resume), methods=["POST"]),
            Route("/ui/runs/{run_id}/cancel", self.post(a.cancel), methods=["POST"]),
            Route("/ui/runs/{run_id}/replay", self.post(a.replay), methods=["POST"]),
            Route("/ui/blobs/{digest}", self.page(p.blob, html=False), methods=["GET"]),
            Route("/ui/flows", self.page(p.flows), methods=["GET"]),
            Route("/ui/events", self.page(events.Events(self).stream, html=False), methods=["GET"]),
            Mount("/ui/static", app=_with_headers(StaticFiles(directory=str(HERE / "static"))), name="ui-static"),
            Route("/ui/{rest:path}", self.not_found, methods=["GET"]),  # last: any other /ui page
        ]

    async def not_found(self, request: Request) -> Response:
        """A page the UI does not have: a 404 carrying the UI's headers (CSP, nosniff) like every page."""
        return Response("no such page of the web UI", status_code=404, media_type="text/plain", headers=HEADERS)

    # -- signing in -------------------------------------------------------------------------
    async def login_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        pre = self.sessions.pre_nonce()
        nxt = _local(request.query_params.get("next", ""))
        response = self.render(request, "login.html", status=status, title="Sign in", error=error, next=nxt,
                               login_csrf=self.sessions.login_csrf(pre), enabled=self.sessions.enabled)
        response.set_cookie("flowrun_ui_login", pre, max_age=3600, path="/ui", httponly=True, samesite="strict",
                            secure=self.secure(request))
        return response

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return self.refuse(request, 413, f"The form is larger than {MAX_FORM} bytes.")
        pre = request.cookies.get("flowrun_ui_login") or ""
        if not pre or not _same(self.sessions.login_csrf(pre), form.get("csrf")):
            return await self.login_form(request, "The form expired; try again.", 403)
        client = request.client.host if request.client else "?"
        wait = self.throttle.wait(client)
        if wait:
            return await self.login_form(request, f"Too many wrong tokens from {client}; try again in "
                                                  f"{int(wait) + 1} s.", 429)
        if not self.sessions.token_ok(form.get("token") or ""):
            self.throttle.failed(client)
            log.warning("web UI sign-in refused", extra={"event": "ui_login_refused", "client": client})
            return await self.login_form(request, "That is not the admin token.", 403)
        self.throttle.succeeded(client)
        response = RedirectResponse(_local(form.get("next") or "") or "/ui/runs", 303, headers=HEADERS)
        response.set_cookie(COOKIE, self.sessions.new_cookie(), path="/ui", httponly=True, samesite="strict",
                            secure=self.secure(request))
        response.delete_cookie("flowrun_ui_login", path="/ui")
        return response

    async def logout(self, request: Request) -> Response:
        """The session ends here and on the server: a copy of its cookie opens nothing after."""
        self.sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/login", 303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict", secure=self.secure(request))
        return response


def _with_headers(app: Any) -> Any:
    """``app`` (the static files) answering with the UI's headers: nosniff and CSP on scripts and styles
    too, and on its 404s."""
    extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items() if k != "Cache-Control"]

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k, v) for k, v in extra if k not in names)]}
            await send(message)
        try:
            await app(scope, receive, sending)
        except HTTPException as exc:  # no such file: raised past us to the app's handler, without our headers
            await Response("no such file of the web UI", status_code=exc.status_code, media_type="text/plain",
                           headers=HEADERS)(scope, receive, send)

    return wrapped


def _same(expected: str, given: Any) -> bool:
    import hmac

    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _local(path: str) -> str:
    """A path inside the UI to go back to after signing in; anything else (another site): ''."""
    if not isinstance(path, str) or not path.startswith("/ui/") or path.startswith("//") or "\\" in path \
            or any(c in path for c in "\r\n\t\x00") or len(path) > 2000:
        return ""
    return path


async def read_form(request: Request) -> dict[str, str] | None:
    """A URL-encoded form (the first value of each field), or None past MAX_FORM bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_FORM:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM:
            return None
        chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", "replace")
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=100) if text else {}
    except ValueError:  # more fields than any form of the UI has
        return None
    return {k: v[0] for k, v in fields.items()}


def _when(ts: float | None) -> str:
    from engine.runs import iso

    text = iso(ts)
    return "" if text is None else text[:23].replace("T", " ")


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{seconds:.1f} s"

"""Cassettes: each vendor call a test made against real (or sandbox) endpoints, stored redacted,
so later runs of the test replay them offline.

Vendor SDKs reach the network through a few transports, and the cassette sits at each, not at
each node:

- urllib3's ``HTTPConnectionPool.urlopen`` (requests, and so Twilio, Stripe, Salesforce, Azure;
  botocore for AWS), and the same method of the urllib3 an SDK vendors (Snowflake's connector
  ships its own requests and urllib3: ``VENDORED_URLLIB3``);
- httpx's ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request``;
- ``urllib.request.OpenerDirector.open`` (SendGrid's python_http_client).

``flowrun test --record`` runs a test with the network open and records every call under the
action that made it (``network.ACTION``), in order. A later run replays: the n-th call of an
action gets the n-th recorded answer, after its method and URL are checked against the
recording. Credential headers are dropped (``***``: the listed names, and any name that says it
carries one, ``X-Session-Token``), and so are a URL's userinfo and its credential query values
(``access_token=``, ``sig=``, in request URLs and ``Location`` headers); every secret the process knows is masked,
in every form the redactor knows (JSON-escaped, URL-encoded, base64, ...), and so are the values
of token-like fields a vendor hands out (a login's sessionId, an access_token), in requests and
responses alike, before anything is written; the file is written whole or not at all.

A file ``orders.test.yaml`` keeps its cassettes in ``orders.test.cassette.json``.
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import CassetteError, CassetteMiss
from .network import ACTION

VERSION = 1
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                                "api-key", "x-amz-security-token", "x-auth-token", "x-goog-api-key",
                                "ocp-apim-subscription-key", "aeg-sas-key", "aeg-sas-token", "x-mcd-token",
                                "x-mcd-id", "x-databricks-token"})
DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding", "connection"})
OUTSIDE = "-"  # the key of calls made outside any action


# credentials a vendor hands out (a login's session id, an OAuth token) are secrets the process
# never configured: values under these names are masked in bodies (JSON, form, XML); Snowflake's
# login hands out a token and a masterToken. A page token is no credential: replays send it back
_TOKEN_NAMES = (r"(?:(?:access|refresh|id|session|master|auth|bearer|security)_?token|session_?id|client_secret"
                r"|password|api_?key|secret|token)")
_TOKEN_JSON = re.compile(rf'("{_TOKEN_NAMES}"\s*:\s*")((?:[^"\\]|\\.)*)(")', re.I)
_TOKEN_FORM = re.compile(rf"((?:^|&){_TOKEN_NAMES}=)([^&]*)", re.I)
_TOKEN_XML = re.compile(rf"(<(?:\w+:)?({_TOKEN_NAMES})>)([^<]*)(</(?:\w+:)?\2>)", re.I)


_URL_HEADERS = frozenset({"location", "content-location", "referer", "link"})


def mask_url(url: str) -> str:
    """``url`` with its userinfo (``user:password@``) and the values of its credential query
    parameters (``access_token``, ``sig``, ``api_key`` ...) masked; anything else as it was."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from ..listener.inbound import secret_query

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(secret_query(k) or re.fullmatch(_TOKEN_NAMES, k, re.I) for k, _ in pairs):
            query = urlencode([(k, "***" if v and (secret_query(k) or re.fullmatch(_TOKEN_NAMES, k, re.I)) else v)
                               for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_tokens(text: str) -> str:
    """``text`` with the values of token-like fields (JSON, form-encoded, XML) masked."""
    text = _TOKEN_JSON.sub(lambda m: m.group(1) + ("***" if m.group(2) else "") + m.group(3), text)
    text = _TOKEN_FORM.sub(lambda m: m.group(1) + ("***" if m.group(2) else ""), text)
    return _TOKEN_XML.sub(lambda m: m.group(1) + ("***" if m.group(3) else "") + m.group(4), text)


def cassette_path(test_file: str | Path) -> Path:
    path = Path(test_file)
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    return path.parent / f"{stem}.cassette.json"


class Cassette:
    """The recorded calls of one test: {action path: [interaction, ...]}."""

    def __init__(self, calls: dict[str, list[dict]] | None = None, *, redact: Callable[[str], str] = str):
        self.calls: dict[str, list[dict]] = calls or {}
        self.redact = redact
        self.problems: list[tuple[str | None, str]] = []  # (action, what went wrong): replay misses
        self._next: dict[str, int] = {}
        self._used_outside: set[int] = set()  # recorded calls outside any action, replayed already
        self._lock = threading.Lock()

    # -- reading and writing -------------------------------------------------------------------
    @staticmethod
    def read_file(path: Path) -> dict[str, dict[str, list[dict]]]:
        """{test name: calls} of a cassette file ({} when there is none)."""
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # nested past the parser's depth
            raise CassetteError(f"{path}: not a readable cassette ({str(exc)[:200]})") from None
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("tests"), dict) \
                or not all(_well_formed(calls) for calls in data["tests"].values()):
            raise CassetteError(f"{path}: not a flowrun cassette (version {VERSION}); record it again "
                                "with flowrun test --record")
        return data["tests"]

    @staticmethod
    def write_file(path: Path, tests: dict[str, dict[str, list[dict]]], redact: Callable[[str], str]) -> None:
        """Write the whole file at once (a temporary file renamed over it), every secret masked."""
        text = redact(json.dumps({"version": VERSION, "tests": tests}, indent=1, sort_keys=True,
                                 ensure_ascii=False)) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # as any file this user writes (mkstemp makes it 0600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @staticmethod
    @contextlib.contextmanager
    def locked(path: Path) -> Iterator[None]:
        """Hold the cassette's folder (an exclusive ``flock``) while its file is read, merged and
        written: two ``flowrun test --record`` runs of one test file, each recording its own
        tests, then both keep theirs (each re-read the file inside the lock, not before it)."""
        try:
            import fcntl
        except ImportError:  # not POSIX: each write is still whole
            yield
            return
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # and the lock with it

    # -- one call --------------------------------------------------------------------------------
    def _key(self) -> str:
        return ACTION.get() or OUTSIDE

    def record(self, method: str, url: str, headers: Any, body: Any, status: int, reason: str,
               response_headers: Any, response_body: bytes) -> None:
        body = _decoded(headers, body)
        entry = {"request": {"method": method.upper(), "url": self._url(url),
                             "headers": self._headers(headers), "body": self._body(body)},
                 "response": {"status": int(status), "reason": self.redact(reason or ""),
                              "headers": self._headers(response_headers), "body": self._body(response_body)}}
        with self._lock:
            self.calls.setdefault(self._key(), []).append(entry)

    def replay(self, method: str, url: str) -> dict:
        """The recorded response of this call: {status, reason, headers, body (bytes)}; raises
        ``CassetteMiss`` (noted in ``problems``) when the recording has no such call."""
        key = self._key()
        with self._lock:
            n = self._next.get(key, 0)
            recorded = self.calls.get(key) or []
            self._next[key] = n + 1
            if key == OUTSIDE:  # an SDK's own threads (telemetry, probes) call in any order
                n = self._unused_outside(method, url, recorded)
        who = f"action '{key}'" if key != OUTSIDE else "a call outside any action"
        if n >= len(recorded):
            return self._miss(key, f"{who} made call {n + 1} ({method.upper()} {self._url(url)}) but the "
                                   f"cassette holds {len(recorded)}: record it again with flowrun test --record")
        request = recorded[n]["request"]
        if request["method"] != method.upper() or _strip(request["url"]) != _strip(self._url(url)):
            return self._miss(key, f"{who} call {n + 1} is {method.upper()} {self._url(url)}, but the cassette "
                                   f"recorded {request['method']} {request['url']}: record it again with "
                                   "flowrun test --record")
        response = dict(recorded[n]["response"])
        response["body"] = _unbody(response.get("body"))
        return response

    def _unused_outside(self, method: str, url: str, recorded: list[dict]) -> int:
        """The index of the first recorded call outside any action with this method and URL not
        replayed yet (else past the end: a miss). The caller holds the lock."""
        used = self._used_outside
        for i, entry in enumerate(recorded):
            request = entry["request"]
            if i not in used and request["method"] == method.upper() and \
                    _strip(request["url"]) == _strip(self.redact(url)):
                used.add(i)
                return i
        return len(recorded)

    def _miss(self, key: str, message: str) -> dict:
        with self._lock:
            self.problems.append((None if key == OUTSIDE else key, message))
        raise CassetteMiss(message)

    def _url(self, url: str) -> str:
        return mask_url(self.redact(url))

    def _headers(self, headers: Any) -> dict:
        from ..listener.inbound import secret_header

        out = {}
        for name, value in (dict(headers or {})).items():
            name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            low = name.lower()
            if low in DROPPED_HEADERS:
                continue
            if low in CREDENTIAL_HEADERS or secret_header(low):
                out[name] = "***"
            else:
                out[name] = self._url(value) if low in _URL_HEADERS else self.redact(value)
        return out

    def _body(self, body: Any) -> Any:
        if body is None or isinstance(body, dict):  # a dict: why the body is not kept
            return body
        if isinstance(body, str):
            return mask_tokens(self.redact(body))
        if hasattr(body, "read"):  # a file-like request body: not replayable, not kept
            return {"omitted": "a streamed body"}
        if isinstance(body, (bytes, bytearray, memoryview)):
            raw = bytes(body)
            try:
                return mask_tokens(self.redact(raw.decode("utf-8")))
            except UnicodeDecodeError:
                masked = self.redact(raw.decode("latin-1")).encode("latin-1", "replace")
                return {"base64": base64.b64encode(masked).decode("ascii")}
        if isinstance(body, (list, tuple)) or hasattr(body, "__iter__"):
            return {"omitted": "a streamed body"}
        return self.redact(str(body))


def _well_formed(calls: Any) -> bool:
    """{action: [{request: {method, url}, response: {status, reason, headers, body}}]}"""
    if not isinstance(calls, dict):
        return False
    for entries in calls.values():
        if not isinstance(entries, list):
            return False
        for e in entries:
            request, response = (e.get("request"), e.get("response")) if isinstance(e, dict) else (None, None)
            if not (isinstance(request, dict) and isinstance(request.get("method"), str)
                    and isinstance(request.get("url"), str) and isinstance(response, dict)
                    and isinstance(response.get("status"), int) and not isinstance(response.get("status"), bool)
                    and 100 <= response["status"] <= 599 and _text_map(response.get("headers", {}))
                    and isinstance(response.get("reason", ""), str) and _replayable(response.get("body"))):
                return False
    return True


def _decoded(headers: Any, body: Any) -> Any:
    """A gzip-compressed request body (Snowflake's connector compresses every request) as the
    bytes it holds: redaction must see them (a password inside gzip is still the password)."""
    encoding = ""
    for name, value in dict(headers or {}).items():
        name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        if name.lower() == "content-encoding":
            encoding = (value.decode("latin-1") if isinstance(value, bytes) else str(value)).strip().lower()
    if encoding == "gzip" and isinstance(body, (bytes, bytearray, memoryview)):
        import gzip
        import zlib

        try:
            return gzip.decompress(bytes(body))
        except (OSError, EOFError, zlib.error):
            return {"omitted": "a compressed body that did not decompress"}
    if encoding not in ("", "identity") and body is not None:
        return {"omitted": f"a {encoding[:20]}-encoded body"}
    return body


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def _text_map(headers: Any) -> bool:
    """Headers as a transport takes them: names and values text (an int or a list made the
    replayed call fail inside the SDK, blamed on the action)."""
    return isinstance(headers, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())


def _replayable(body: Any) -> bool:
    """A body ``_body`` writes: text, none, {"base64": <valid base64>} or {"omitted": why}."""
    if body is None or isinstance(body, str):
        return True
    if not isinstance(body, dict) or len(body) != 1:
        return False
    if "omitted" in body:
        return isinstance(body["omitted"], str)
    try:
        base64.b64decode(body.get("base64"), validate=True)
        return isinstance(body.get("base64"), str)
    except (TypeError, ValueError):
        return False


def _strip(url: str) -> str:
    """A URL without scheme and host (a recording made against a sandbox replays against any
    host), its query's UUIDs made alike (a request id each call makes up, as Snowflake's
    ``request_id`` and ``request_guid``, must not fail a replay)."""
    rest = url.split("://", 1)[-1]
    path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    base, sep, query = path.partition("?")
    return base + sep + _UUID.sub("<uuid>", query)


def _unbody(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, dict):
        return base64.b64decode(body.get("base64", "")) if "base64" in body else b""
    return str(body).encode("utf-8")


# -- the transports ------------------------------------------------------------------------------
class Transports:
    """Patches the transports to record into or replay from the cassette that ``current``
    returns for the calling context (None: the call goes through untouched, or is refused by the
    network guard). Process-wide, nestable; entered around a test run."""

    _lock = threading.Lock()
    _depth = 0
    _undo: list[Callable[[], None]] = []

    def __init__(self, current: Callable[[], tuple[str, Cassette] | None]):
        self.current = current

    def __enter__(self) -> "Transports":
        with Transports._lock:
            Transports._active = self
            if Transports._depth == 0:
                Transports._undo = list(_patch_all(self._lookup))
            Transports._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        with Transports._lock:
            Transports._depth -= 1
            if Transports._depth == 0:
                for undo in reversed(Transports._undo):
                    undo()
                Transports._undo = []

    @staticmethod
    def _lookup() -> tuple[str, Cassette] | None:
        active = getattr(Transports, "_active", None)
        return active.current() if active is not None else None


def _patch_all(lookup: Callable[[], tuple[str, Cassette] | None]) -> Iterator[Callable[[], None]]:
    for patch in (_patch_urllib3, _patch_vendored_urllib3, _patch_httpx, _patch_urllib):
        try:
            undo = patch(lookup)
        except ImportError:
            continue
        yield undo


VENDORED_URLLIB3 = ("snowflake.connector.vendored.urllib3",)  # SDKs that carry a urllib3 of their own


def _patch_vendored_urllib3(lookup: Callable[[], Any]) -> Callable[[], None]:
    """The same patch on the urllib3 an SDK vendors (Snowflake's connector ships its own requests
    and urllib3, which the plain urllib3 patch never sees), for each such SDK that is installed.
    Patching imports it (about a second, once per process): the runner enters ``Transports`` only
    around a test that records or replays."""
    import importlib.util

    undos = []
    for root in VENDORED_URLLIB3:
        try:
            if importlib.util.find_spec(root.split(".vendored")[0]) is None:
                continue
        except (ImportError, ValueError):
            continue
        undos.append(_patch_urllib3(lookup, root))
    if not undos:
        raise ImportError("no SDK with a vendored urllib3 is installed")

    def undo() -> None:
        for u in reversed(undos):
            u()
    return undo


def _patch_urllib3(lookup: Callable[[], Any], root: str = "urllib3") -> Callable[[], None]:
    import importlib

    HTTPResponse = importlib.import_module(f"{root}.response").HTTPResponse
    HTTPConnectionPool = importlib.import_module(f"{root}.connectionpool").HTTPConnectionPool

    original = HTTPConnectionPool.urlopen

    def urlopen(pool: Any, method: str, url: str, body: Any = None, headers: Any = None, *args: Any,
                **kw: Any) -> Any:
        got = lookup()
        if got is None:
            return original(pool, method, url, body, headers, *args, **kw)
        mode, cassette = got
        full = url if "://" in url else f"{pool.scheme}://{pool.host}:{pool.port}{url}"
        preload = kw.get("preload_content", True)
        if mode == "record":
            kw["preload_content"] = False
            resp = original(pool, method, url, body, headers, *args, **kw)
            data = resp.read(decode_content=True)
            resp.release_conn()
            cassette.record(method, full, headers, body, resp.status, resp.reason, resp.headers, data)
            status, reason, rheaders = resp.status, resp.reason, _plain(resp.headers)
        else:
            answer = cassette.replay(method, full)
            status, reason, rheaders, data = answer["status"], answer["reason"], answer["headers"], answer["body"]
        rheaders = {**rheaders, "Content-Length": str(len(data))}
        return HTTPResponse(body=io.BytesIO(data), headers=rheaders, status=status, reason=reason,
                            preload_content=preload, decode_content=False, request_method=method,
                            request_url=full)

    HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]
    return lambda: setattr(HTTPConnectionPool, "urlopen", original)


def _plain(headers: Any) -> dict:
    return {k: v for k, v in dict(headers).items() if k.lower() not in DROPPED_HEADERS}


def _patch_httpx(lookup: Callable[[], Any]) -> Callable[[], None]:
    import httpx

    sync_original = httpx.HTTPTransport.handle_request
    async_original = httpx.AsyncHTTPTransport.handle_async_request

    def answer(request: Any, cassette: Cassette) -> Any:
        got = cassette.replay(request.method, str(request.url))
        return httpx.Response(got["status"], headers=got["headers"], content=got["body"], request=request)

    def handle_request(transport: Any, request: Any) -> Any:
        got = lookup()
        if got is None:
            return sync_original(transport, request)
        mode, cassette = got
        if mode != "record":
            return answer(request, cassette)
        resp = sync_original(transport, request)
        data = resp.read()
        cassette.record(request.method, str(request.url), request.headers, request.content, resp.status_code,
                        resp.reason_phrase, resp.headers, data)
        return httpx.Response(resp.status_code, headers=_plain(resp.headers), content=data, request=request)

    async def handle_async_request(transport: Any, request: Any) -> Any:
        got = lookup()
        if got is None:
            return await async_original(transport, request)
        mode, cassette = got
        if mode != "record":
            return answer(request, cassette)
        resp = await async_original(transport, request)
        data = await resp.aread()
        cassette.record(request.method, str(request.url), request.headers, request.content, resp.status_code,
                        resp.reason_phrase, resp.headers, data)
        return httpx.Response(resp.status_code, headers=_plain(resp.headers), content=data, request=request)

    httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]

    def undo() -> None:
        httpx.HTTPTransport.handle_request = sync_original  # type: ignore[method-assign]
        httpx.AsyncHTTPTransport.handle_async_request = async_original  # type: ignore[method-assign]
    return undo


def _patch_urllib(lookup: Callable[[], Any]) -> Callable[[], None]:
    import email.message
    import urllib.error
    import urllib.request
    import urllib.response

    original = urllib.request.OpenerDirector.open

    def respond(url: str, status: int, reason: str, headers: dict, data: bytes) -> Any:
        msg = email.message.Message()
        for k, v in headers.items():
            msg[k] = v
        if status >= 400:
            raise urllib.error.HTTPError(url, status, reason, msg, io.BytesIO(data))
        return urllib.response.addinfourl(io.BytesIO(data), msg, url, status)

    def open_(opener: Any, fullurl: Any, data: Any = None, *args: Any, **kw: Any) -> Any:
        got = lookup()
        if got is None:
            return original(opener, fullurl, data, *args, **kw)
        mode, cassette = got
        request = fullurl if isinstance(fullurl, urllib.request.Request) else urllib.request.Request(fullurl, data)
        body = data if data is not None else request.data
        url, method = request.full_url, request.get_method()
        if mode != "record":
            got_ = cassette.replay(method, url)
            return respond(url, got_["status"], got_["reason"], got_["headers"], got_["body"])
        try:
            resp = original(opener, fullurl, data, *args, **kw)
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            cassette.record(method, url, dict(request.header_items()), body, exc.code, str(exc.reason),
                            dict(exc.headers or {}), payload)
            return respond(url, exc.code, str(exc.reason), _plain(exc.headers or {}), payload)
        payload = resp.read()
        cassette.record(method, url, dict(request.header_items()), body, resp.status, resp.reason,
                        dict(resp.headers), payload)
        return respond(url, resp.status, resp.reason or "", _plain(resp.headers), payload)

    urllib.request.OpenerDirector.open = open_  # type: ignore[method-assign]
    return lambda: setattr(urllib.request.OpenerDirector, "open", original)

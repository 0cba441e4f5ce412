"""A loopback stand-in for Elasticsearch: the few HTTP APIs the official client uses for shipping.

No Elasticsearch server can be installed on the machines these tests run on, so the shipper and
the reconciliation job are tested against this small in-process server instead. It speaks the
real wire format of the endpoints the official ``elasticsearch`` 9.x client calls for them and
nothing else; it is not a search engine (no analysis, scoring, mappings enforcement, shards):

* ``GET /`` with the ``X-Elastic-Product: Elasticsearch`` header the client checks;
* ``PUT /{index}`` (create; 400 ``resource_already_exists_exception``), ``HEAD /{index}``,
  ``DELETE /{index}``;
* ``POST /_bulk`` and ``POST /{index}/_bulk``: NDJSON ``create``/``index``/``delete`` actions;
  ``create`` on an existing id answers 409 ``version_conflict_engine_exception`` for that item;
* ``GET|POST /{index}/_search``: ``match_all``, ``term``, ``terms``, ``range``, ``ids``,
  ``exists`` and ``bool`` (must/filter/must_not/should) queries, ``sort``, ``size``, ``from``
  and ``search_after``;
* ``GET /{index}/_doc/{id}``, ``PUT /{index}/_create/{id}``, ``PUT /{index}/_doc/{id}``
  (``op_type=create`` honoured), ``DELETE /{index}/_doc/{id}``;
* ``POST /{index}/_refresh`` and ``POST /_refresh`` (documents are searchable at once anyway).

Switches for tests: :meth:`FakeElasticsearch.fail_next` answers the next N requests with 429 or
503 (to exercise retries), :meth:`FakeElasticsearch.fail_items_next` rejects the next N bulk
items with a per-item status, and :meth:`put_document`/:meth:`delete_document` tamper with the
stored documents behind the client's back. It listens on 127.0.0.1 only, on a port the OS picks.
Run ``python -m tests.support.fake_elasticsearch`` to serve one by hand.
"""

from __future__ import annotations

import argparse
import json
import operator
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.processes import Service

JSON_TYPE = "application/vnd.elasticsearch+json;compatible-with=9"
VERSION = "9.1.0"


class _HttpError(Exception):
    """An Elasticsearch-shaped error response."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.body = {"error": {"type": kind, "reason": reason,
                               "root_cause": [{"type": kind, "reason": reason}]},
                     "status": status}


@dataclass
class _Index:
    mappings: dict[str, Any] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    seq_no: int = 0


class FakeElasticsearch(Service):
    """The server: start it (or use it as a context manager), point the client at :attr:`url`."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.indices: dict[str, _Index] = {}
        self.requests: list[tuple[str, str]] = []
        """Every request as ``(method, path)``, in arrival order (for assertions)."""
        self._failures: deque[int] = deque()
        self._item_failures: deque[int] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> str:
        """Listen on a free 127.0.0.1 port in a background thread; returns the base URL."""
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-elasticsearch", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("the fake Elasticsearch server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---------------------------------------------------------------- test switches

    def fail_next(self, count: int, status: int = 429) -> None:
        """Answer the next ``count`` requests with ``status`` (429 or 5xx) instead of serving."""
        with self._lock:
            self._failures.extend([status] * count)

    def fail_items_next(self, count: int, status: int = 429) -> None:
        """Reject the next ``count`` bulk items with ``status`` (the bulk request itself is 200)."""
        with self._lock:
            self._item_failures.extend([status] * count)

    def documents(self, index: str) -> dict[str, dict[str, Any]]:
        """A copy of the documents of ``index`` by id (empty if the index does not exist)."""
        with self._lock:
            found = self.indices.get(index)
            return {k: json.loads(json.dumps(v)) for k, v in found.docs.items()} if found else {}

    def put_document(self, index: str, doc_id: str, source: dict[str, Any]) -> None:
        """Store ``source`` under ``doc_id``, overwriting: what an attacker with ES access does."""
        with self._lock:
            self._store(self._index(index, create=True), doc_id, source)

    def delete_document(self, index: str, doc_id: str) -> None:
        """Remove a document behind the client's back."""
        with self._lock:
            idx = self._index(index, create=False)
            idx.docs.pop(doc_id, None)
            idx.versions.pop(doc_id, None)

    # ---------------------------------------------------------------- request dispatch

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        """Serve one request: ``(status, JSON body or None for HEAD)``."""
        parts = urlsplit(target)
        path = [unquote(p) for p in parts.path.split("/") if p]
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, parts.path))
            if self._failures:
                status = self._failures.popleft()
                kind = ("es_rejected_execution_exception" if status == 429
                        else "unavailable_shards_exception")
                raise _HttpError(status, kind, f"injected failure ({status})")
            return self._route(method, path, params, body)

    def _route(self, method: str, path: list[str], params: dict[str, str],
               body: bytes) -> tuple[int, Any]:
        if not path:
            if method in ("GET", "HEAD"):
                return 200, self._info()
            raise _HttpError(405, "method_not_allowed", f"{method} / is not supported")
        if path[0] == "_bulk" and len(path) == 1 and method in ("POST", "PUT"):
            return self._bulk(None, body, params)
        if path[0] == "_refresh" and len(path) == 1:
            return 200, _shards()
        if path[0].startswith("_"):
            raise _HttpError(400, "invalid_index_name_exception",
                             f"unsupported endpoint /{'/'.join(path)}")
        index = path[0]
        if len(path) == 1:
            return self._index_op(method, index, body)
        op = path[1]
        if op == "_bulk" and len(path) == 2 and method in ("POST", "PUT"):
            return self._bulk(index, body, params)
        if op == "_search" and len(path) == 2 and method in ("GET", "POST"):
            return 200, self._search(index, _json_body(body) if body else {}, params)
        if op == "_refresh" and len(path) == 2 and method in ("POST", "GET"):
            self._index(index, create=False)
            return 200, _shards()
        if op in ("_doc", "_create") and len(path) == 3:
            return self._doc_op(method, index, op, path[2], body, params)
        raise _HttpError(400, "illegal_argument_exception",
                         f"unsupported request {method} /{'/'.join(path)}")

    @staticmethod
    def _info() -> dict[str, Any]:
        return {"name": "fake-es", "cluster_name": "loopback", "cluster_uuid": "fake",
                "version": {"number": VERSION, "build_flavor": "default",
                            "lucene_version": "10.0.0"},
                "tagline": "You Know, for Search"}

    # ---------------------------------------------------------------- indices and documents

    def _index(self, name: str, *, create: bool) -> _Index:
        found = self.indices.get(name)
        if found is None:
            if not create:
                raise _HttpError(404, "index_not_found_exception", f"no such index [{name}]")
            found = self.indices[name] = _Index()
        return found

    def _index_op(self, method: str, index: str, body: bytes) -> tuple[int, Any]:
        if method == "HEAD":
            return (200 if index in self.indices else 404), None
        if method == "PUT":
            if index in self.indices:
                raise _HttpError(400, "resource_already_exists_exception",
                                 f"index [{index}] already exists")
            settings = _json_body(body) if body else {}
            self.indices[index] = _Index(mappings=dict(settings.get("mappings") or {}))
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}
        if method == "DELETE":
            self._index(index, create=False)
            del self.indices[index]
            return 200, {"acknowledged": True}
        if method == "GET":
            idx = self._index(index, create=False)
            return 200, {index: {"mappings": idx.mappings, "settings": {}}}
        raise _HttpError(405, "method_not_allowed", f"{method} /{index} is not supported")

    def _store(self, idx: _Index, doc_id: str, source: dict[str, Any]) -> int:
        idx.docs[doc_id] = json.loads(json.dumps(source))
        idx.versions[doc_id] = idx.versions.get(doc_id, 0) + 1
        idx.seq_no += 1
        return idx.versions[doc_id]

    def _write(self, index: str, doc_id: str, source: Any, *, create: bool) -> dict[str, Any]:
        """One create/index; returns the bulk-item-shaped result (status inside)."""
        if not isinstance(source, dict):
            return _item_error(index, doc_id, 400, "mapper_parsing_exception",
                               "the document must be a JSON object")
        idx = self._index(index, create=True)
        if create and doc_id in idx.docs:
            return _item_error(
                index, doc_id, 409, "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists "
                f"(current version [{idx.versions[doc_id]}])")
        existed = doc_id in idx.docs
        version = self._store(idx, doc_id, source)
        return {"_index": index, "_id": doc_id, "_version": version,
                "result": "updated" if existed else "created", "_shards": _shards()["_shards"],
                "_seq_no": idx.seq_no - 1, "_primary_term": 1,
                "status": 200 if existed else 201}

    def _doc_op(self, method: str, index: str, op: str, doc_id: str, body: bytes,
                params: dict[str, str]) -> tuple[int, Any]:
        if method == "GET" and op == "_doc":
            idx = self.indices.get(index)
            if idx is None:
                raise _HttpError(404, "index_not_found_exception", f"no such index [{index}]")
            if doc_id not in idx.docs:
                return 404, {"_index": index, "_id": doc_id, "found": False}
            return 200, {"_index": index, "_id": doc_id, "_version": idx.versions[doc_id],
                         "_seq_no": 0, "_primary_term": 1, "found": True,
                         "_source": idx.docs[doc_id]}
        if method == "DELETE" and op == "_doc":
            idx = self._index(index, create=False)
            if idx.docs.pop(doc_id, None) is None:
                return 404, {"_index": index, "_id": doc_id, "result": "not_found"}
            idx.versions.pop(doc_id, None)
            return 200, {"_index": index, "_id": doc_id, "result": "deleted"}
        if method in ("PUT", "POST"):
            create = op == "_create" or params.get("op_type") == "create"
            result = self._write(index, doc_id, _json_body(body), create=create)
            status = int(result.pop("status"))
            if "error" in result:
                raise _HttpError(status, result["error"]["type"], result["error"]["reason"])
            return status, result
        raise _HttpError(405, "method_not_allowed", f"{method} /{index}/{op} is not supported")

    # ---------------------------------------------------------------- bulk

    def _bulk(self, default_index: str | None, body: bytes,
              params: dict[str, str]) -> tuple[int, Any]:
        lines = [line for line in body.split(b"\n") if line.strip()]
        items: list[dict[str, Any]] = []
        i = 0
        while i < len(lines):
            action_line = _json_line(lines[i], i + 1)
            i += 1
            if not isinstance(action_line, dict) or len(action_line) != 1:
                raise _HttpError(400, "illegal_argument_exception",
                                 f"line {i}: malformed action/metadata line")
            (action, meta), = action_line.items()
            if action not in ("create", "index", "delete", "update"):
                raise _HttpError(400, "illegal_argument_exception",
                                 f"line {i}: unknown action [{action}]")
            meta = meta if isinstance(meta, dict) else {}
            index = meta.get("_index") or default_index
            if not index:
                raise _HttpError(400, "action_request_validation_exception",
                                 f"line {i}: index is missing")
            doc_id = str(meta["_id"]) if meta.get("_id") is not None else None
            source: Any = None
            if action != "delete":
                if i >= len(lines):
                    raise _HttpError(400, "illegal_argument_exception",
                                     f"line {i}: the {action} action has no document line")
                source = _json_line(lines[i], i + 1)
                i += 1
            items.append({action: self._bulk_item(action, index, doc_id, source)})
        errors = any("error" in next(iter(item.values())) for item in items)
        return 200, {"took": 1, "errors": errors, "items": items}

    def _bulk_item(self, action: str, index: str, doc_id: str | None,
                   source: Any) -> dict[str, Any]:
        if self._item_failures:
            status = self._item_failures.popleft()
            return _item_error(index, doc_id or "", status, "es_rejected_execution_exception",
                               f"injected item failure ({status})")
        if action == "update":
            return _item_error(index, doc_id or "", 400, "illegal_argument_exception",
                               "the loopback server does not implement update")
        if action == "delete":
            idx = self.indices.get(index)
            if idx is None or doc_id is None or doc_id not in idx.docs:
                return {"_index": index, "_id": doc_id, "result": "not_found", "status": 404}
            del idx.docs[doc_id]
            idx.versions.pop(doc_id, None)
            return {"_index": index, "_id": doc_id, "result": "deleted", "status": 200}
        if doc_id is None:
            if action == "create":
                return _item_error(index, "", 400, "action_request_validation_exception",
                                   "an id is required for create")
            doc_id = uuid.uuid4().hex
        return self._write(index, doc_id, source, create=action == "create")

    # ---------------------------------------------------------------- search

    def _search(self, index: str, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        idx = self._index(index, create=False)
        matcher = _compile_query(body.get("query", {"match_all": {}}))
        hits = [(doc_id, src) for doc_id, src in idx.docs.items() if matcher(src, doc_id)]
        sort = _sort_spec(body.get("sort"))
        if sort:
            hits.sort(key=lambda hit: _sort_key(hit[1], sort))
        after = body.get("search_after")
        if after is not None:
            if not sort or not isinstance(after, list) or len(after) != len(sort):
                raise _HttpError(400, "illegal_argument_exception",
                                 "search_after needs as many values as sort fields")
            hits = [h for h in hits if _after(_sort_values(h[1], sort), after, sort)]
        size = int(body.get("size", params.get("size", 10)))
        start = int(body.get("from", params.get("from", 0)))
        page = hits[start:start + size]
        out = []
        for doc_id, src in page:
            hit: dict[str, Any] = {"_index": index, "_id": doc_id, "_score": None if sort else 1.0,
                                   "_source": src}
            if sort:
                hit["sort"] = _sort_values(src, sort)
            out.append(hit)
        return {"took": 1, "timed_out": False, "_shards": _shards()["_shards"],
                "hits": {"total": {"value": len(hits), "relation": "eq"},
                         "max_score": None if sort else 1.0, "hits": out}}


# ---------------------------------------------------------------- query language (a subset)

_Matcher = Callable[[dict[str, Any], str], bool]


def _field(source: dict[str, Any], name: str) -> Any:
    """A dotted field of a document (``pii.ref``); None when absent."""
    value: Any = source
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _one(spec: Any, what: str) -> tuple[str, Any]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise _HttpError(400, "parsing_exception", f"[{what}] query malformed")
    ((name, arg),) = spec.items()
    return name, arg


def _compile_query(query: Any) -> _Matcher:
    kind, arg = _one(query, "query")
    if kind == "match_all":
        return lambda _src, _id: True
    if kind == "ids":
        ids = {str(v) for v in (arg or {}).get("values", [])}
        return lambda _src, doc_id: doc_id in ids
    if kind == "exists":
        wanted = str((arg or {}).get("field"))
        return lambda src, _id: _field(src, wanted) is not None
    if kind in ("term", "terms", "range"):
        name, cond = _one(arg, kind)
        if kind == "term":
            want = cond.get("value") if isinstance(cond, dict) else cond
            return lambda src, _id: _field(src, name) == want
        if kind == "terms":
            values = list(cond)
            return lambda src, _id: _field(src, name) in values
        return _range(name, cond)
    if kind == "bool":
        return _bool(arg or {})
    raise _HttpError(400, "parsing_exception", f"unknown query [{kind}] (not in the loopback "
                     "server's subset)")


_RANGE_OPS = {"gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt}


def _range(name: str, cond: Any) -> _Matcher:
    if not isinstance(cond, dict):
        raise _HttpError(400, "parsing_exception", "[range] query malformed")
    tests: list[tuple[Callable[[Any, Any], Any], Any]] = []
    for op, bound in cond.items():
        if op not in _RANGE_OPS:
            raise _HttpError(400, "parsing_exception", f"[range] unknown parameter [{op}]")
        tests.append((_RANGE_OPS[op], bound))

    def match(src: dict[str, Any], _id: str) -> bool:
        value = _field(src, name)
        try:
            return value is not None and all(test(value, bound) for test, bound in tests)
        except TypeError:
            return False

    return match


def _clauses(spec: Any) -> list[_Matcher]:
    items = spec if isinstance(spec, list) else [spec]
    return [_compile_query(q) for q in items]


def _bool(spec: dict[str, Any]) -> _Matcher:
    must = _clauses(spec.get("must", [])) + _clauses(spec.get("filter", []))
    must_not = _clauses(spec.get("must_not", []))
    should = _clauses(spec.get("should", []))

    def match(src: dict[str, Any], doc_id: str) -> bool:
        if not all(m(src, doc_id) for m in must):
            return False
        if any(m(src, doc_id) for m in must_not):
            return False
        return not should or bool(must) or any(m(src, doc_id) for m in should)

    return match


def _sort_spec(spec: Any) -> list[tuple[str, bool]]:
    """``[(field, descending)]`` from the ``sort`` forms the client sends."""
    if spec is None:
        return []
    out: list[tuple[str, bool]] = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, str):
            name, _, order = item.partition(":")
            out.append((name, order == "desc"))
            continue
        name, how = _one(item, "sort")
        order = how.get("order", "asc") if isinstance(how, dict) else how
        out.append((name, order == "desc"))
    return out


def _sort_values(src: dict[str, Any], sort: list[tuple[str, bool]]) -> list[Any]:
    return [_field(src, name) for name, _desc in sort]


class _Reversed:
    """Inverts the order of a value (descending sort keys)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]


def _sort_key(src: dict[str, Any], sort: list[tuple[str, bool]]) -> tuple[Any, ...]:
    key: list[Any] = []
    for name, desc in sort:
        value = _field(src, name)
        missing = value is None  # missing values sort last, as Elasticsearch does
        key.append((missing, _Reversed(value) if desc and not missing else
                    (value if not missing else 0)))
    return tuple(key)


def _after(values: list[Any], after: list[Any], sort: list[tuple[str, bool]]) -> bool:
    """True when a hit with sort ``values`` comes strictly after ``after``."""
    for value, bound, (_name, desc) in zip(values, after, sort, strict=True):
        if value == bound:
            continue
        if value is None:
            return True
        if bound is None:
            return False
        return bool(value < bound) if desc else bool(value > bound)
    return False


# ---------------------------------------------------------------- HTTP plumbing


def _shards() -> dict[str, Any]:
    return {"_shards": {"total": 1, "successful": 1, "failed": 0}}


def _item_error(index: str, doc_id: str, status: int, kind: str, reason: str) -> dict[str, Any]:
    return {"_index": index, "_id": doc_id, "status": status,
            "error": {"type": kind, "reason": reason, "index": index}}


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _HttpError(400, "parse_exception", f"request body is not JSON: {exc}") from None


def _json_line(line: bytes, number: int) -> Any:
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise _HttpError(400, "illegal_argument_exception",
                         f"line {number}: not a JSON object") from None


def _handler_for(server: FakeElasticsearch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, payload = server.handle(self.command, self.path, body)
            except _HttpError as exc:
                status, payload = exc.status, exc.body
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests assert on server.requests instead

    return Handler


def main() -> None:  # pragma: no cover - manual use
    """Serve until interrupted (``python -m tests.support.fake_elasticsearch``)."""
    import time

    argparse.ArgumentParser(description="Serve the loopback Elasticsearch stand-in.").parse_args()
    with FakeElasticsearch() as es:
        print(f"loopback Elasticsearch stand-in at {es.url} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()

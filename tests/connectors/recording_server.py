"""A recording HTTP server on 127.0.0.1 that answers like OpenSearch, Elasticsearch or Qdrant.

The real client libraries (``opensearch-py``, ``elasticsearch``, ``qdrant-client``) talk to it
through the normal ``open_store(url)`` path, so what it records is exactly what a real server
would receive. It keeps just enough state (indexes, documents, collections, points, pipelines)
for the connectors to work, and scripted :class:`Fault` answers stand in for what a test cannot
provoke otherwise: bulk partial failures, 429s, licence 403s, version conflicts, shard failures.
Search answers are not ranked (every document scores 1.0): these tests are about requests.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Captured:
    """One request as the server received it (NDJSON bodies as a list of lines)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    """Answer the next ``times`` requests matching (method, path regex) with this status and body."""

    method: str
    path: str
    status: int
    body: Any
    times: int = 1


Reply = tuple[int, Any]


class RecordingServer:
    """A threaded HTTP server recording every request and answering through ``app``."""

    def __init__(self, app: FakeApp):
        self.app = app
        self.requests: list[Captured] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                captured = Captured(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    _parse_body(raw, ndjson=parts.path.endswith(("/_bulk", "/_msearch"))),
                )
                status, body = server._reply(captured)
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for k, v in server.app.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _reply(self, req: Captured) -> Reply:
        with self._lock:
            self.requests.append(req)
            for fault in self.faults:
                if fault.times > 0 and fault.method == req.method and re.fullmatch(fault.path, req.path):
                    fault.times -= 1
                    return fault.status, fault.body
            try:
                return self.app.handle(req)
            except Exception as exc:  # a bug in the fake must show up, not hang the client
                return 500, {"error": {"type": "fake_server_error", "reason": repr(exc)}, "status": 500}

    def fail(self, method: str, path: str, status: int, body: Any, times: int = 1) -> None:
        self.faults.append(Fault(method, path, status, body, times))

    def clear(self) -> None:
        self.requests.clear()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _parse_body(raw: bytes, ndjson: bool) -> Any:
    if not raw:
        return None
    text = raw.decode()
    if ndjson:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


class FakeApp:
    """What a fake server answers; subclasses route by (method, path)."""

    headers: dict[str, str]  # sent with every answer
    routes: ClassVar[list[tuple[str, str, str]]] = []  # (method, path regex, handler name)

    def handle(self, req: Captured) -> Reply:
        for method, pattern, name in self.routes:
            match = re.fullmatch(pattern, req.path)
            if method == req.method and match:
                handler: Callable[..., Reply] = getattr(self, name)
                return handler(req, *match.groups())
        return 404, {"error": {"type": "no_route", "reason": f"{req.method} {req.path}"}, "status": 404}


# -- OpenSearch and Elasticsearch -------------------------------------------------------------------
def _error(status: int, kind: str, reason: str) -> Reply:
    return status, {
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    }


@dataclass
class Index:
    mappings: dict[str, Any]
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)


class SearchEngineApp(FakeApp):
    """OpenSearch (``flavor="opensearch"``) or Elasticsearch answering as ``version``."""

    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", r"/", "info"),
        ("GET", r"/_license", "license"),
        ("PUT", r"/_search/pipeline/([^/]+)", "put_pipeline"),
        ("POST", r"/_bulk", "bulk"),
        ("PUT", r"/_bulk", "bulk"),
        ("POST", r"/_msearch", "msearch"),
        ("HEAD", r"/([^/_][^/]*)", "exists"),
        ("PUT", r"/([^/_][^/]*)", "create"),
        ("DELETE", r"/([^/_][^/]*)", "delete_index"),
        ("GET", r"/([^/_][^/]*)/_mapping", "get_mapping"),
        ("PUT", r"/([^/_][^/]*)/_mapping", "put_mapping"),
        ("POST", r"/([^/_][^/]*)/_refresh", "refresh"),
        ("POST", r"/([^/_][^/]*)/_search", "search"),
        ("POST", r"/([^/_][^/]*)/_count", "count"),
        ("POST", r"/([^/_][^/]*)/_mget", "mget"),
        ("POST", r"/([^/_][^/]*)/_delete_by_query", "delete_by_query"),
    ]

    def __init__(self, flavor: str, version: str, license: str = "trial"):
        self.flavor = flavor
        self.version = version
        self.license_type = license
        self.indices: dict[str, Index] = {}
        self.pipelines: dict[str, Any] = {}
        self.headers = {"X-Elastic-Product": "Elasticsearch"} if flavor == "elasticsearch" else {}

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def handle(self, req: Captured) -> Reply:
        if self.flavor == "elasticsearch":
            # REST API compatibility: a server accepts compatible-with its own major and the one before.
            for name in ("accept", "content-type"):
                m = re.search(r"compatible-with=(\d+)", req.headers.get(name, ""))
                if m and int(m.group(1)) not in (self.major, self.major - 1):
                    return _error(
                        400,
                        "media_type_header_exception",
                        f"Invalid media-type value on headers [{name.title()}]: compatible-with={m.group(1)}",
                    )
        return super().handle(req)

    def info(self, req: Captured) -> Reply:
        version: dict[str, Any] = {"number": self.version, "build_flavor": "default"}
        if self.flavor == "opensearch":
            version["distribution"] = "opensearch"
        return 200, {"name": "fake", "cluster_name": "fake", "version": version, "tagline": "The OpenSearch Project"}

    def license(self, req: Captured) -> Reply:
        return 200, {"license": {"status": "active", "type": self.license_type}}

    def put_pipeline(self, req: Captured, name: str) -> Reply:
        self.pipelines[name] = req.body
        return 200, {"acknowledged": True}

    def exists(self, req: Captured, index: str) -> Reply:
        return (200 if index in self.indices else 404), None

    def create(self, req: Captured, index: str) -> Reply:
        if index in self.indices:
            return _error(400, "resource_already_exists_exception", f"index [{index}] already exists")
        self.indices[index] = Index(dict((req.body or {}).get("mappings") or {}))
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}

    def delete_index(self, req: Captured, index: str) -> Reply:
        self.indices.pop(index, None)
        return 200, {"acknowledged": True}

    def _index(self, index: str) -> Index | None:
        return self.indices.get(index)

    def get_mapping(self, req: Captured, index: str) -> Reply:
        ix = self._index(index)
        if ix is None:
            return _error(404, "index_not_found_exception", f"no such index [{index}]")
        return 200, {index: {"mappings": ix.mappings}}

    def put_mapping(self, req: Captured, index: str) -> Reply:
        ix = self._index(index)
        if ix is None:
            return _error(404, "index_not_found_exception", f"no such index [{index}]")
        ix.mappings.update(req.body or {})
        return 200, {"acknowledged": True}

    def refresh(self, req: Captured, index: str) -> Reply:
        return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}

    def bulk(self, req: Captured) -> Reply:
        lines = list(req.body or [])
        items = []
        i = 0
        while i < len(lines):
            ((action, meta),) = lines[i].items()
            ix = self.indices.setdefault(meta["_index"], Index({}))
            if action == "delete":
                found = ix.docs.pop(meta["_id"], None) is not None
                items.append({"delete": {"_id": meta["_id"], "status": 200 if found else 404}})
                i += 1
            else:
                ix.docs[meta["_id"]] = lines[i + 1]
                items.append({action: {"_id": meta["_id"], "status": 201, "result": "created"}})
                i += 2
        return 200, {"took": 1, "errors": False, "items": items}

    def _hit(self, pid: str, source: dict[str, Any], score: float | None = 1.0) -> dict[str, Any]:
        return {"_index": "ix", "_id": pid, "_score": score, "_source": source}

    def search(self, req: Captured, index: str) -> Reply:
        body = req.body or {}
        ix = self._index(index) or Index({})
        size = int(body.get("size", 10))
        docs = sorted(ix.docs.items(), key=lambda kv: (kv[1].get("doc_id", ""), kv[1].get("chunk", 0)))
        if "sort" in body:
            after = tuple(body.get("search_after") or ())
            rows = [(pid, s, (s.get("doc_id"), s.get("chunk"))) for pid, s in docs]
            rows = [r for r in rows if not after or r[2] > after][:size]
            hits = [{**self._hit(pid, s, None), "sort": list(key)} for pid, s, key in rows]
        else:
            hits = [self._hit(pid, s) for pid, s in docs[:size]]
        return 200, {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": 1.0, "hits": hits},
        }

    def msearch(self, req: Captured) -> Reply:
        lines = req.body or []
        answers = []
        for header, body in zip(lines[::2], lines[1::2]):
            _, answer = self.search(Captured(req.method, req.path, req.query, req.headers, body), header["index"])
            answers.append({**answer, "status": 200})
        return 200, {"took": 1, "responses": answers}

    def count(self, req: Captured, index: str) -> Reply:
        ix = self._index(index) or Index({})
        return 200, {"count": len(ix.docs), "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}

    def mget(self, req: Captured, index: str) -> Reply:
        ix = self._index(index) or Index({})
        docs = []
        for d in (req.body or {}).get("docs", []):
            pid = d["_id"]
            if pid in ix.docs:
                docs.append({"_index": index, "_id": pid, "found": True, "_source": ix.docs[pid]})
            else:
                docs.append({"_index": index, "_id": pid, "found": False})
        return 200, {"docs": docs}

    def delete_by_query(self, req: Captured, index: str) -> Reply:
        ix = self._index(index) or Index({})
        wanted = set(((req.body or {}).get("query") or {}).get("terms", {}).get("doc_id", []))
        gone = [pid for pid, s in ix.docs.items() if s.get("doc_id") in wanted]
        for pid in gone:
            del ix.docs[pid]
        return 200, {"took": 1, "deleted": len(gone), "total": len(gone), "version_conflicts": 0, "failures": []}


# -- Qdrant -----------------------------------------------------------------------------------------
def _ok(result: Any) -> Reply:
    return 200, {"result": result, "status": "ok", "time": 0.0}


@dataclass
class Collection:
    config: dict[str, Any]
    metadata: dict[str, Any]
    points: dict[str, dict[str, Any]] = field(default_factory=dict)


class QdrantApp(FakeApp):
    """A Qdrant server answering as ``version``."""

    C = r"/collections/([^/]+)"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", r"/", "info"),
        ("GET", C + r"/exists", "exists"),
        ("GET", C, "get"),
        ("PUT", C, "create"),
        ("PATCH", C, "update"),
        ("DELETE", C, "delete"),
        ("PUT", C + r"/index", "payload_index"),
        ("PUT", C + r"/points", "upsert"),
        ("POST", C + r"/points/delete", "delete_points"),
        ("POST", C + r"/points/count", "count"),
        ("POST", C + r"/points", "retrieve"),
        ("POST", C + r"/points/scroll", "scroll"),
        ("POST", C + r"/points/query", "query"),
        ("POST", C + r"/points/query/batch", "query_batch"),
    ]

    def __init__(self, version: str):
        self.version = version
        self.collections: dict[str, Collection] = {}
        self.headers = {}

    def info(self, req: Captured) -> Reply:
        return 200, {"title": "qdrant - vector search engine", "version": self.version, "commit": "0" * 40}

    def exists(self, req: Captured, name: str) -> Reply:
        return _ok({"exists": name in self.collections})

    def get(self, req: Captured, name: str) -> Reply:
        c = self.collections.get(name)
        if c is None:
            return 404, {"status": {"error": f"Not found: Collection `{name}` doesn't exist!"}, "time": 0.0}
        config = {
            "params": c.config,
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
            "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
            "metadata": c.metadata,
        }
        return _ok(
            {
                "status": "green",
                "optimizer_status": "ok",
                "segments_count": 1,
                "points_count": len(c.points),
                "config": config,
                "payload_schema": {},
            }
        )

    def create(self, req: Captured, name: str) -> Reply:
        body = dict(req.body or {})
        metadata = body.pop("metadata", None) or {}
        self.collections[name] = Collection(
            {"vectors": body.get("vectors") or {}, "sparse_vectors": body.get("sparse_vectors")}, metadata
        )
        return _ok(True)

    def update(self, req: Captured, name: str) -> Reply:
        self.collections[name].metadata.update((req.body or {}).get("metadata") or {})
        return _ok(True)

    def delete(self, req: Captured, name: str) -> Reply:
        self.collections.pop(name, None)
        return _ok(True)

    def payload_index(self, req: Captured, name: str) -> Reply:
        return _ok({"operation_id": 0, "status": "completed"})

    def upsert(self, req: Captured, name: str) -> Reply:
        for p in (req.body or {})["points"]:
            self.collections[name].points[str(p["id"])] = p
        return _ok({"operation_id": 1, "status": "completed"})

    def delete_points(self, req: Captured, name: str) -> Reply:
        c = self.collections[name]
        body = req.body or {}
        if "points" in body:
            for pid in body["points"]:
                c.points.pop(str(pid), None)
        else:
            (cond,) = body["filter"]["must"]
            wanted = set(cond["match"]["any"])
            for pid in [pid for pid, p in c.points.items() if p["payload"].get("doc_id") in wanted]:
                del c.points[pid]
        return _ok({"operation_id": 2, "status": "completed"})

    def count(self, req: Captured, name: str) -> Reply:
        return _ok({"count": len(self.collections[name].points)})

    def _record(self, p: dict[str, Any], with_vectors: Any) -> dict[str, Any]:
        vector = {k: v for k, v in (p.get("vector") or {}).items() if with_vectors and k in with_vectors}
        return {"id": p["id"], "payload": p.get("payload") or {}, "vector": vector or None}

    def retrieve(self, req: Captured, name: str) -> Reply:
        body = req.body or {}
        c = self.collections[name]
        found = [c.points[str(pid)] for pid in body["ids"] if str(pid) in c.points]
        return _ok([self._record(p, body.get("with_vector")) for p in found])

    def scroll(self, req: Captured, name: str) -> Reply:
        body = req.body or {}
        ids = sorted(self.collections[name].points)
        start = ids.index(str(body["offset"])) if body.get("offset") is not None else 0
        limit = int(body.get("limit") or 10)
        page = ids[start : start + limit]
        after = ids[start + limit] if start + limit < len(ids) else None
        points = [self._record(self.collections[name].points[i], body.get("with_vector")) for i in page]
        return _ok({"points": points, "next_page_offset": after})

    def query(self, req: Captured, name: str) -> Reply:
        return _ok(self._answer(name, req.body or {}))

    def query_batch(self, req: Captured, name: str) -> Reply:
        return _ok([self._answer(name, search) for search in (req.body or {}).get("searches", [])])

    def _answer(self, name: str, body: dict) -> dict:
        limit = int(body.get("limit") or 10)
        points = list(self.collections[name].points.values())[:limit]
        return {"points": [{**self._record(p, body.get("with_vector")), "version": 1, "score": 1.0} for p in points]}

"""Strict validation of captured request bodies against the servers' own API specifications.

The specs (``../shared/specs``, see its README) accept unknown keys by default, so a validation
that trusted them as written would never catch a typo. Every object schema that lists its
``properties`` is made closed here (``unevaluatedProperties: false``, which sees through
``allOf``/``$ref``, so inheritance still works: members of an ``allOf`` stay open, the object that
combines them is closed). OpenAPI 3.0 ``nullable`` becomes a JSON-Schema type union, and the
Elasticsearch generator artefacts listed in the README are relaxed, each one by name.

Each spec is loaded lazily: a ``$ref`` becomes a URN naming (file, JSON pointer, strict or open),
and ``referencing`` builds that variant of the schema the first time a request needs it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jsonschema
import referencing
import yaml
from referencing.jsonschema import DRAFT202012

METHODS = ("get", "put", "post", "delete", "head", "patch")
#: Keywords whose values are schemas that stand alone (closed when they describe an object).
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = (
    "items",
    "additionalProperties",
    "propertyNames",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "unevaluatedItems",
)

#: OpenAPI keywords that are not JSON Schema (nullable is converted after the walk).
_DROPPED = ("nullable", "discriminator", "example", "xml")
#: Elasticsearch generator artefacts (README of the specs), each visible in the TypeScript source.
_ES_VARIANT_CONTAINERS = ("_types.query_dsl.SparseVectorQuery", "_types.mapping.DynamicTemplate", "_types.SortOptions")


@dataclass(frozen=True)
class Finding:
    """One validation error of one captured request."""

    method: str
    path: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.where}: {self.message}"


class Spec:
    """One server's API specification: operations by (method, path) and strict body schemas."""

    def __init__(
        self,
        name: str,
        files: dict[str, Any],
        main: Iterable[str],
        *,
        openapi30: bool,
        patches: dict[str, Callable[[Any], Any]] | None = None,
        relax_minmax: Iterable[str] = (),
        one_of_to_any_of: bool = False,
    ):
        self.name = name
        self._files = files
        self._openapi30 = openapi30
        self._patches = patches or {}
        self._relax_minmax = frozenset(relax_minmax)
        self._any_of = one_of_to_any_of
        self._resources: dict[str, referencing.Resource] = {}
        self._registry: referencing.Registry = referencing.Registry(retrieve=self._retrieve)  # type: ignore[call-arg]
        self._routes: list[tuple[int, re.Pattern[str], str, str, dict[str, Any]]] = []
        for file in main:
            for template, item in (files[file].get("paths") or {}).items():
                pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
                for method in METHODS:
                    if method in item:
                        self._routes.append((template.count("{"), re.compile(pattern), method, file, item[method]))
        self._routes.sort(key=lambda r: r[0])  # literal segments win over path parameters

    # -- loading -----------------------------------------------------------------------------
    def _resolve_ref(self, file: str, ref: str) -> tuple[str, str]:
        target, _, pointer = ref.partition("#")
        if target:
            target = str(Path(file).parent / target).replace("\\", "/")
            target = re.sub(r"[^/]+/\.\./", "", target)
        return target or file, pointer

    def _node(self, file: str, pointer: str) -> Any:
        node = self._files[file]
        for part in pointer.strip("/").split("/") if pointer.strip("/") else []:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _urn(self, file: str, pointer: str, strict: bool) -> str:
        return f"urn:spec:{'strict' if strict else 'open'}:{quote(file, safe='')}:{quote(pointer, safe='')}"

    def _retrieve(self, uri: str) -> referencing.Resource:
        """Build each variant once; later validators find it in the registry (lookups of what a
        registry had to retrieve are slow, and it does not keep what it retrieved)."""
        if uri not in self._resources:
            self._resources[uri] = self._build(uri)
            self._registry = self._registry.with_resource(uri, self._resources[uri])
        return self._resources[uri]

    def _build(self, uri: str) -> referencing.Resource:
        _, _, variant, file, pointer = uri.split(":", 4)
        file, pointer = unquote(file), unquote(pointer)
        schema = self._convert(
            file, self._node(file, pointer), strict=variant == "strict", name=pointer.rsplit("/", 1)[-1]
        )
        return referencing.Resource.from_contents(schema, default_specification=DRAFT202012)

    def _convert(self, file: str, node: Any, *, strict: bool, name: str = "", relax: bool = False) -> Any:
        """The strict (or, for ``allOf`` members, open) JSON-Schema 2020-12 form of an OpenAPI schema."""
        if not isinstance(node, dict):
            return node
        if name in self._patches:
            node = self._patches[name](copy.deepcopy(node))
        relax = relax or name in self._relax_minmax
        out: dict[str, Any] = {}
        composed = "allOf" in node or ("$ref" in node and "properties" in node)
        for key, value in node.items():
            if key == "$ref":
                target, pointer = self._resolve_ref(file, value)
                out[key] = self._urn(target, pointer, strict and not composed)
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {k: self._convert(file, v, strict=True, relax=relax) for k, v in value.items()}
            elif key in _SCHEMA_LISTS or (key == "allOf" and isinstance(value, list)):
                members = [self._convert(file, v, strict=key != "allOf", relax=relax) for v in value]
                out["anyOf" if key == "oneOf" and self._any_of else key] = members
            elif key in _SCHEMA_ONE and isinstance(value, dict):
                out[key] = self._convert(file, value, strict=True, relax=relax)
            elif (key in ("minProperties", "maxProperties") and relax) or key in _DROPPED or key.startswith("x-"):
                continue
            else:
                out[key] = value
        if self._openapi30 and node.get("nullable"):
            # Qdrant writes "or null" as an anyOf member that is only {"nullable": true}.
            bare = not set(node) - {"nullable", "description", "default"}
            out = {"type": "null"} if bare else {"anyOf": [out, {"type": "null"}]}
        open_ended = any(k in node for k in ("additionalProperties", "patternProperties", "unevaluatedProperties"))
        if strict and not open_ended and ("properties" in node or composed):
            out["unevaluatedProperties"] = False
        return out

    # -- validating --------------------------------------------------------------------------
    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for _, pattern, m, file, op in self._routes:
            if m == method.lower() and pattern.match(path):
                return file, op
        return None

    def body_schema(self, file: str, op: dict[str, Any]) -> tuple[str, Any] | None:
        """(file, schema node) of an operation's request body, following ``requestBodies`` refs."""
        body = op.get("requestBody")
        while isinstance(body, dict) and "$ref" in body:
            file, pointer = self._resolve_ref(file, body["$ref"])
            body = self._node(file, pointer)
        if not body:
            return None
        content = body["content"]
        media = next(iter(content.values()))
        return file, media["schema"]

    def validate(self, method: str, path: str, body: Any) -> list[Finding]:
        """Errors of one request: an unknown operation, a body where none is allowed, or schema errors."""
        found = self.operation(method, path)
        if found is None:
            return [Finding(method, path, self.name, "no such operation in the spec")]
        file, op = found
        schema = self.body_schema(file, op)
        if body is None:
            return []
        if schema is None:
            return [Finding(method, path, self.name, "the operation takes no request body")]
        file, node = schema
        if isinstance(body, list) and node.get("type") == "array":  # NDJSON: bulk action/source pairs
            return self._validate_bulk(method, path, file, node, body)
        return self._errors(method, path, self._convert(file, node, strict=True), body)

    def rejects(self, method: str, path: str, body: Any) -> bool:
        """Whether the spec refuses this request (stops at the first error: for mutation tests)."""
        found = self.operation(method, path)
        if found is None:
            return True
        schema = self.body_schema(*found)
        if schema is None:
            return body is not None
        file, node = schema
        if isinstance(body, list) and node.get("type") == "array":
            return bool(self._validate_bulk(method, path, file, node, body))
        validator = jsonschema.Draft202012Validator(self._convert(file, node, strict=True), registry=self._registry)
        return next(validator.iter_errors(body), None) is not None

    def _validate_bulk(self, method: str, path: str, file: str, node: Any, lines: list[Any]) -> list[Finding]:
        """NDJSON bodies. ``_msearch``: header lines against the first alternative, search bodies
        against the second. ``_bulk``: action lines against the first alternative (the operation
        container); sources are documents."""
        items = node["items"]
        if path.endswith("/_msearch"):
            if "$ref" in items:
                file, pointer = self._resolve_ref(file, items["$ref"])
                items = self._node(file, pointer)
            header, body = (self._convert(file, alt, strict=True) for alt in items.get("oneOf", items.get("anyOf")))
            return [
                finding
                for i, line in enumerate(lines)
                for finding in self._errors(method, path, body if i % 2 else header, line, f"line {i}")
            ]
        action = items.get("anyOf", items.get("oneOf", [items]))[0]
        schema = self._convert(file, action, strict=True)
        findings: list[Finding] = []
        i = 0
        while i < len(lines):
            findings += self._errors(method, path, schema, lines[i], f"line {i}")
            i += 1 if "delete" in lines[i] else 2
        return findings

    def _errors(self, method: str, path: str, schema: Any, body: Any, where: str = "body") -> list[Finding]:
        validator = jsonschema.Draft202012Validator(schema, registry=self._registry)
        out = []
        for error in validator.iter_errors(body):
            leaves = _leaf_errors(error)
            for leaf in leaves:
                loc = "/".join(str(p) for p in leaf.absolute_path)
                out.append(Finding(method, path, f"{self.name} {where} at /{loc}", leaf.message[:300]))
        return out


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The most specific errors under an anyOf failure: those of the alternative that got furthest
    into the body (a type mismatch at the top means the alternative did not apply at all)."""
    if not error.context:
        return [error]
    alternatives: dict[Any, list[jsonschema.ValidationError]] = {}
    for e in error.context:
        alternatives.setdefault(e.schema_path[0] if e.schema_path else None, []).append(e)

    def reach(leaves: list[jsonschema.ValidationError]) -> tuple[int, bool, int]:
        depth = max(len(e.absolute_path) for e in leaves)
        applied = all(e.validator not in ("type", "required", "enum", "const") for e in leaves)
        return depth, applied, -len(leaves)

    leaves = [[leaf for e in errors for leaf in _leaf_errors(e)] for errors in alternatives.values()]
    return max(leaves, key=reach)


# -- the three specs ------------------------------------------------------------------------------
def _load_yaml_tree(root: Path) -> dict[str, Any]:
    return {str(p.relative_to(root)): yaml.safe_load(p.read_text()) for p in root.rglob("*.yaml")}


def _es_patches() -> dict[str, Callable[[Any], Any]]:
    ref = "#/components/schemas/"

    def term_shortcut(node: Any) -> Any:  # {"term": {"field": "value"}}
        return {"anyOf": [node, {"$ref": ref + "_types.FieldValue"}]}

    def dynamic_bool(node: Any) -> Any:  # "dynamic": true
        return {"anyOf": [node, {"type": "boolean"}]}

    def field_keys(node: Any) -> Any:  # {"terms": {"field": [...]}}, {"sort": [{"field": "asc"}]}
        node = dict(node)
        node["additionalProperties"] = True
        return node

    return {
        "_types.query_dsl.TermQuery": term_shortcut,
        "_types.mapping.DynamicMapping": dynamic_bool,
        "_types.query_dsl.TermsQuery": field_keys,
        "_types.SortOptions": field_keys,
    }


def _opensearch_patches() -> dict[str, Callable[[Any], Any]]:
    def one_of_to_any_of(node: Any) -> Any:  # sort: [{"field": "asc"}] matches two alternatives at once
        node = dict(node)
        if "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
        return node

    def rrf_weights(node: Any) -> Any:
        # Weighted RRF (OpenSearch >= 3.1) takes combination.parameters.weights like the
        # normalization processor; the spec has not caught up (neural-search RRFProcessor,
        # ScoreCombinationUtil), so the property is added, typed as the normalization one.
        node = copy.deepcopy(node)
        node["properties"]["parameters"] = {"$ref": "#/components/schemas/ScoreCombinationParameters"}
        return node

    return {
        "SortCombinations": one_of_to_any_of,
        "Sort": one_of_to_any_of,
        "ScoreRankerCombination": rrf_weights,
    }


@cache
def opensearch_spec(specs: Path) -> Spec:
    root = specs / "opensearch" / "spec"
    files = _load_yaml_tree(root)
    return Spec(
        "opensearch",
        files,
        [f for f in files if f.startswith("namespaces/")],
        openapi30=False,
        patches=_opensearch_patches(),
    )


@cache
def elasticsearch_spec(specs: Path) -> Spec:
    doc = json.loads((specs / "elasticsearch" / "elasticsearch-serverless-openapi.json").read_text())
    return Spec(
        "elasticsearch",
        {"es.json": doc},
        ["es.json"],
        openapi30=True,
        patches=_es_patches(),
        relax_minmax=_ES_VARIANT_CONTAINERS,
        one_of_to_any_of=True,
    )


@cache
def qdrant_spec(specs: Path, version: str) -> Spec:
    doc = json.loads((specs / "qdrant" / f"openapi-{version}.json").read_text())
    return Spec(f"qdrant-{version}", {"qdrant.json": doc}, ["qdrant.json"], openapi30=True)

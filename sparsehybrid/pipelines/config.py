"""One file that describes an ingestion job: source, models, store, batching, schedule, Dask.

A scheduled job should be a single reviewable file, so every knob of ``sparsehybrid index``
lives here, validated by pydantic (unknown keys are errors: a typo must not be silently
ignored). YAML and TOML are both accepted::

    source: {path: data/corpus.jsonl, fields: {id: _id, text: text, title: title}}
    models: {sparse: splade-tiny, dense: null, max_length: 256}
    store: qdrant-edge://./my-index
    sync: true
    schedule: {cron: "0 * * * *"}

Secrets never belong in this file (it is stored by Prefect as the flow run's parameters):
write ``${VAR}`` in the store URL and it is expanded from the environment when the store is
opened; server stores also read their credentials from the environment
(:mod:`sparsehybrid.connectors.connection`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..connectors.registry import rebase_local_url
from ..encoders.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL, NONE_WORDS
from ..ingestion.sources import FieldMap


class PipelineConfigError(ValueError):
    """A pipeline config file is unreadable or invalid; the message names the file and keys."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldsConfig(_Strict):
    """Which source fields hold the id, text, title and metadata (see :class:`FieldMap`)."""

    id: str | None = None
    text: str = "text"
    title: str | None = "title"
    metadata: list[str] | None = None

    @field_validator("id", "title", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v  # TOML has no null

    def field_map(self) -> FieldMap:
        return FieldMap(id=self.id, text=self.text, title=self.title or None, metadata=self.metadata)


class SourceConfig(_Strict):
    path: Path
    #: jsonl, beir, csv, tsv, parquet, dir; None guesses from the path.
    format: str | None = None
    fields: FieldsConfig = Field(default_factory=FieldsConfig)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str | None) -> str | None:
        from ..ingestion.sources import READERS

        if v is not None and v not in READERS:
            raise ValueError(f"unknown source format {v!r}; known: {', '.join(sorted(READERS))}")
        return v


class ModelsConfig(_Strict):
    """Encoders (a hub id, a local path, a bundled alias, or null/"none" to skip one)."""

    sparse: str | None = DEFAULT_SPARSE_MODEL
    dense: str | None = DEFAULT_DENSE_MODEL
    bm25: bool = True
    #: cuda, cuda:1, cpu...; None picks CUDA when present. With several GPUs and Dask, each
    #: worker takes one GPU.
    device: str | None = None
    #: Tokens per chunk (None: the models' own max length).
    max_length: int | None = Field(default=None, ge=16)
    #: Texts per forward pass (None: 4 on CPU, 32 on a GPU; see encoders.models.default_batch_size).
    encode_batch_size: int | None = Field(default=None, ge=1)

    @field_validator("sparse", "dense", mode="before")
    @classmethod
    def _none_words(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in NONE_WORDS else v

    @field_validator("sparse", "dense")
    @classmethod
    def _not_a_file(cls, v: str | None) -> str | None:
        """A model is a directory, a hub id or an alias: a file fails here in one line, not in a
        worker's model loader with three tracebacks (issue 23)."""
        if v is not None and os.path.isfile(os.path.expanduser(v)):
            raise ValueError(f"{v} is a file, not a model: give a model directory, a hub id or a bundled alias")
        return v

    @model_validator(mode="after")
    def _something_to_index(self) -> ModelsConfig:
        if self.sparse is None and self.dense is None and not self.bm25:
            raise ValueError("nothing to index with: set models.sparse, models.dense, or models.bm25: true")
        return self


class ScheduleConfig(_Strict):
    cron: str
    timezone: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> ScheduleConfig:
        self.prefect_schedule()
        return self

    def prefect_schedule(self):
        """The Prefect ``CronSchedule`` (it validates the cron string and the time zone)."""
        from prefect.client.schemas.schedules import CronSchedule

        try:
            return CronSchedule(cron=self.cron, timezone=self.timezone)
        except ValidationError as exc:
            raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


class DaskConfig(_Strict):
    """Run the encode tasks on Dask: an existing scheduler, or a LocalCluster of ``n_workers``."""

    address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    #: Worker processes (True) or threads in this process (False), for a LocalCluster.
    processes: bool = True


class PipelineConfig(_Strict):
    #: Names the job (its Prefect artifact key); default: derived from the store URL.
    name: str | None = None
    source: SourceConfig
    store: str = "qdrant-edge://./my-index"
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    #: Documents per batch: the unit of one encode task and one store write.
    batch_size: int = Field(default=64, ge=1)
    #: Tokens shared by consecutive chunks of a long document.
    chunk_overlap: int = Field(default=32, ge=0)
    #: Delete stored documents that are no longer in the source.
    sync: bool = False
    #: A sync may delete at most this share of the collection (and never everything because the
    #: source read as empty) unless ``allow_mass_delete`` is set.
    max_delete_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    allow_mass_delete: bool = False
    #: A run that rejects more than this share of its records (or every record) fails.
    max_reject_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    schedule: ScheduleConfig | None = None
    #: None runs the encode tasks on Prefect's default (thread) runner.
    dask: DaskConfig | None = None
    #: Append rejected records (record, field, reason) to this JSONL file.
    dead_letter: Path | None = None

    @field_validator("store")
    @classmethod
    def _store_url(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a store URL, e.g. qdrant-edge://./my-index")
        return v.strip()

    def store_url(self, values: Mapping[str, str] | None = None) -> str:
        """The store URL with ``${VAR}`` expanded from ``values`` (a run's own secrets), else from
        the environment (a deployment's worker). Keep it out of logs."""
        found = {**os.environ, **(values or {})}

        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in found:
                raise PipelineConfigError(f"store URL refers to ${{{name}}}, which is not set in the environment")
            return found[name]

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, self.store)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PipelineConfig:
        """Load a ``.yaml``/``.yml`` or ``.toml`` file. Relative paths are resolved against the file's folder."""
        p = Path(path)
        if not p.exists():
            raise PipelineConfigError(f"{p}: no such config file")
        text = p.read_text(encoding="utf-8")
        suffix = p.suffix.lower()
        try:
            if suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            elif suffix == ".toml":
                data = tomllib.loads(text)
            else:
                raise PipelineConfigError(f"{p}: unknown config format {suffix!r}; use .yaml, .yml or .toml")
        except PipelineConfigError:
            raise
        except Exception as exc:  # yaml.YAMLError / tomllib.TOMLDecodeError
            raise PipelineConfigError(f"{p}: cannot parse: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise PipelineConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
        cfg = cls.parse(data, where=str(p))
        return cfg.relative_to(p.parent)

    @classmethod
    def parse(cls, data: dict, where: str = "pipeline config") -> PipelineConfig:
        """Validate a dict; errors list every bad key as ``a.b.c: reason``."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = []
            for e in exc.errors():
                loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
                msg = e["msg"].removeprefix("Value error, ")
                if e["type"] == "extra_forbidden":
                    msg = "unknown key (check the spelling)"
                problems.append(f"{loc}: {msg}")
            raise PipelineConfigError(f"{where} is invalid:\n  " + "\n  ".join(problems)) from None

    def relative_to(self, base: Path) -> PipelineConfig:
        """Resolve relative file paths (source, dead letter, qdrant-edge store) against ``base``."""
        upd: dict[str, Any] = {}
        if not self.source.path.is_absolute():
            upd["source"] = self.source.model_copy(update={"path": base / self.source.path})
        if self.dead_letter is not None and not self.dead_letter.is_absolute():
            upd["dead_letter"] = base / self.dead_letter
        store = rebase_local_url(self.store, base)
        if store != self.store:
            upd["store"] = store
        return self.model_copy(update=upd) if upd else self

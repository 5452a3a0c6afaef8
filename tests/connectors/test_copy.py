"""``sparsehybrid copy`` as a library: every pair of store kinds, resuming, refusing, verifying."""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparsehybrid.connectors import open_store
from sparsehybrid.connectors.base import CollectionSchema, StoreError, VectorStore
from sparsehybrid.connectors.transfer import (
    CopyVerificationError,
    IncompatibleDestinationError,
    copy_collection,
    dense_equal,
    same_ranking,
    sparse_equal,
)
from sparsehybrid.types import PointRecord

from .conformance import SCHEMA, make_records
from .recording_server import QdrantApp, RecordingServer, SearchEngineApp
from .test_spec_conformance import findings, spec_of, specs  # noqa: F401  (specs: a fixture)

FUSION = {"method": "rrf", "k": 30, "weights": {"sparse": 2.0, "dense": 1.0}}


def build(url: str, records: list[PointRecord], schema: CollectionSchema = SCHEMA) -> None:
    with open_store(url) as store:
        store.ensure_schema(schema)
        store.upsert(records)
        store.save_fusion(FUSION)


def contents(url: str) -> dict[str, PointRecord]:
    with open_store(url) as store:
        return {r.id: r for batch in store.iter_records(batch_size=7) for r in batch}


def assert_same_points(want: dict[str, PointRecord], got: dict[str, PointRecord]) -> None:
    assert want.keys() == got.keys()
    for pid, record in want.items():
        assert got[pid].payload() == record.payload()
        assert sparse_equal(record, got[pid]) and dense_equal(record.dense, got[pid].dense)


@pytest.fixture
def fast_dir(tmp_path) -> Iterator[Path]:
    """qdrant-client's local mode commits each point to SQLite; tmpfs keeps that quick."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = Path(tempfile.mkdtemp(dir=shm))
        yield base
        shutil.rmtree(base, ignore_errors=True)
    else:
        yield tmp_path


def test_embedded_to_embedded_copies_everything_and_searches_the_same(tmp_path):
    records = make_records(40, chunks_per_doc=2)
    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, records)
    progress: list[tuple[int, int]] = []
    report = copy_collection(
        src, dst, batch_size=16, sample=10, files=False, on_progress=lambda d, t: progress.append((d, t))
    )
    assert report.copied == 80 and report.skipped == 0 and report.destination_count == 80
    assert report.vectors_checked == 10 and report.queries_checked == 5
    assert progress[-1] == (80, 80) and len(progress) == 5
    assert_same_points(contents(src), contents(dst))
    with open_store(src) as a, open_store(dst) as b:
        assert b.schema == a.schema  # models, dims, BM25 settings, metadata fields, fusion
        assert b.schema is not None and b.schema.fusion == FUSION
        # The same rankings and scores (tied scores come back in the engine's storage order, which
        # a copy need not keep: same_ranking leaves the order among ties out).
        for q in records[:5]:
            want, got = (s.search_fused(sparse=q.sparse, dense=q.dense) for s in (a, b))
            assert len(want) == 10 and same_ranking(want, got)


def test_rerun_after_an_interrupted_copy_finishes_without_duplicates(tmp_path):
    records = make_records(30)
    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, records)

    class Killed(Exception):
        pass

    def die_after_two_batches(done: int, total: int) -> None:
        if done >= 20:
            raise Killed

    with pytest.raises(Killed):
        copy_collection(src, dst, batch_size=10, files=False, on_progress=die_after_two_batches)
    with open_store(dst) as partial:
        assert partial.count() == 20
    report = copy_collection(src, dst, batch_size=10)
    assert report.skipped == 20 and report.copied == 10 and report.destination_count == 30
    assert_same_points(contents(src), contents(dst))


def test_an_incompatible_destination_is_refused_before_writing(tmp_path):
    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, make_records(5))
    other = dataclasses.replace(SCHEMA, dense_model="other/model")
    build(dst, make_records(3, prefix="other"), other)
    with pytest.raises(IncompatibleDestinationError) as err:
        copy_collection(src, dst)
    message = str(err.value)
    assert "\n" not in message and "dense_model 'other/model' (source 'test/random-dense')" in message
    with open_store(dst) as untouched:
        assert untouched.count() == 3


def test_an_empty_source_is_refused(tmp_path):
    with pytest.raises(StoreError, match="holds no collection to copy"):
        copy_collection(f"qdrant-edge://{tmp_path / 'nothing'}", f"qdrant-edge://{tmp_path / 'b'}")


def test_parquet_round_trip_loads_another_store_without_encoders(tmp_path):
    records = make_records(25, chunks_per_doc=2)
    src, back = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, records)
    file = tmp_path / "out" / "points.parquet"
    report = copy_collection(src, f"parquet://{file}", batch_size=8, sample=6)
    assert file.is_file() and not file.with_name("points.parquet.partial").exists()
    assert report.destination_count == 50 and report.vectors_checked == 6
    loaded = copy_collection(f"parquet://{file}", back, batch_size=8)
    assert loaded.copied == 50 and loaded.destination_count == 50
    assert_same_points(contents(src), contents(back))
    with open_store(back) as b:
        assert b.schema is not None and b.schema.fusion == FUSION and b.schema.sparse_model == SCHEMA.sparse_model


def test_an_interrupted_parquet_copy_leaves_no_file_that_looks_whole(tmp_path):
    src = f"qdrant-edge://{tmp_path / 'a'}"
    build(src, make_records(30))
    file = tmp_path / "points.parquet"

    def die(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_collection(src, f"parquet://{file}", batch_size=10, on_progress=die)
    assert not file.exists() and not file.with_name("points.parquet.partial").exists()
    assert copy_collection(src, f"parquet://{file}", batch_size=10).destination_count == 30


def test_a_parquet_destination_that_exists_is_refused(tmp_path):
    src = f"qdrant-edge://{tmp_path / 'a'}"
    build(src, make_records(3))
    file = tmp_path / "points.parquet"
    file.write_bytes(b"keep me")
    with pytest.raises(StoreError, match="exists already"):
        copy_collection(src, f"parquet://{file}")
    assert file.read_bytes() == b"keep me"


def test_embedded_to_qdrant_local_mode_and_back(tmp_path, fast_dir):
    records = make_records(20, chunks_per_doc=2)
    src, mid, back = (
        f"qdrant-edge://{tmp_path / 'a'}",
        f"qdrant-local://{fast_dir / 'q'}",
        f"qdrant-edge://{tmp_path / 'c'}",
    )
    build(src, records)
    there = copy_collection(src, mid, batch_size=16)
    assert there.destination_count == 40 and there.queries_checked is None  # another engine
    again = copy_collection(mid, back, batch_size=16)
    assert again.destination_count == 40
    assert_same_points(contents(src), contents(back))


@pytest.mark.parametrize(
    "backend, app, spec",
    [
        ("qdrant", lambda: QdrantApp("1.17.0"), "master"),
        ("opensearch", lambda: SearchEngineApp("opensearch", "3.1.0"), "opensearch"),
        ("elasticsearch", lambda: SearchEngineApp("elasticsearch", "9.2.0"), "elasticsearch"),
    ],
)
def test_embedded_to_each_server_and_back(tmp_path, backend, app, spec, specs):  # noqa: F811
    """Both directions, every request the copy sends valid against the server's own API spec."""
    records = make_records(12, chunks_per_doc=2)
    src, back = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, records)
    server = RecordingServer(app())
    try:
        url = f"{backend}://127.0.0.1:{server.port}/sh-copy"
        report = copy_collection(src, url, batch_size=10, sample=8)
        assert report.destination_count == 24 and report.vectors_checked == 8
        with open_store(url) as remote:
            assert remote.schema is not None and remote.schema.fusion == FUSION
        copy_collection(url, back, batch_size=10)
        assert findings(list(server.requests), [spec_of(specs, spec)]) == []
    finally:
        server.close()
    assert_same_points(contents(src), contents(back))


def test_a_destination_that_loses_points_fails_verification(tmp_path, monkeypatch):
    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, make_records(10))
    from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore

    real = QdrantEdgeStore._write_engine_points  # embedded -> embedded moves the engine's own points

    def drop_one(self: VectorStore, points):
        return real(self, points[1:])

    monkeypatch.setattr(QdrantEdgeStore, "_write_engine_points", drop_one)
    with pytest.raises(CopyVerificationError, match="holds 9 points after copying 10"):
        copy_collection(src, dst, batch_size=100, files=False)


def test_a_destination_that_changes_vectors_fails_verification(tmp_path, monkeypatch):
    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, make_records(10))
    import qdrant_edge

    from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore

    real = QdrantEdgeStore._write_engine_points

    def rotate_dense(self: VectorStore, points):
        def rotated(v):
            return [*v[1:], v[0]]

        changed = [
            qdrant_edge.Point(p.id, {**p.vector, "dense": rotated(p.vector["dense"])}, p.payload) for p in points
        ]
        return real(self, changed)

    monkeypatch.setattr(QdrantEdgeStore, "_write_engine_points", rotate_dense)
    with pytest.raises(CopyVerificationError, match="different dense vector"):
        copy_collection(src, dst, batch_size=100, sample=3, files=False)


def test_a_file_copy_that_lost_a_point_fails_verification(tmp_path, monkeypatch):
    from sparsehybrid.connectors.qdrant_edge import EdgeShardCopy

    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    records = make_records(10)
    build(src, records)
    real = EdgeShardCopy.run

    def lose_one(self: EdgeShardCopy, on_bytes=None) -> int:
        done = real(self, on_bytes)
        self.dest.delete_points([records[3].id])
        return done

    monkeypatch.setattr(EdgeShardCopy, "run", lose_one)
    with pytest.raises(CopyVerificationError, match="holds 9 points after copying 10"):
        copy_collection(src, dst)


def test_same_ranking_allows_reordered_ties_but_not_other_points():
    from sparsehybrid.types import ScoredPoint

    def points(*pairs):
        return [ScoredPoint(id=i, score=s, payload={}) for i, s in pairs]

    base = points(("a", 3.0), ("b", 2.0), ("c", 2.0), ("d", 1.0))
    assert same_ranking(base, points(("a", 3.0), ("c", 2.0), ("b", 2.0000001), ("d", 1.0)))
    assert same_ranking(base, points(("a", 3.0), ("b", 2.0), ("c", 2.0), ("e", 1.0)))  # tied with the last: the cut
    assert not same_ranking(base, points(("a", 3.0), ("b", 2.0), ("e", 2.0), ("d", 1.0)))
    assert not same_ranking(base, points(("a", 3.0), ("b", 2.0), ("c", 2.0), ("d", 1.1)))
    assert not same_ranking(base, base[:3])


def test_prefetched_reads_ahead_boundedly_and_hands_over_errors():
    import threading

    from sparsehybrid.connectors.transfer import prefetched

    read: list[int] = []

    def source():
        for i in range(100):
            read.append(i)
            yield [i]

    batches = prefetched(source(), depth=2)
    assert next(batches) == [0]
    batches.close()  # stops the reader: it read at most the queue's depth ahead
    assert len(read) <= 4 and not [t for t in threading.enumerate() if t.name == "copy-reader"]

    def failing():
        yield [1]
        raise StoreError("source went away")

    got = []
    with pytest.raises(StoreError, match="source went away"):
        for batch in prefetched(failing()):
            got.append(batch)
    assert got == [[1]]


def test_embedded_to_embedded_carries_bm25_only_where_its_settings_agree(tmp_path):
    """The engine-form copy carries the stored BM25 vectors, which depend on the collection's
    average document length: into a collection with another one, BM25 is derived again by the
    destination (the generic path), so its BM25 search answers as if it had indexed the text."""
    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    records = make_records(40)
    build(src, records)
    other = dataclasses.replace(SCHEMA, bm25_avg_len=(SCHEMA.bm25_avg_len or 10.0) * 3)
    build(dst, records[:1], other)
    with open_store(src) as a, open_store(dst) as b:
        assert a.engine_points_to(b) is None  # the average differs: no carrying
    copy_collection(src, dst, batch_size=9, queries=0)
    reference = f"qdrant-edge://{tmp_path / 'c'}"
    build(reference, records, other)
    with open_store(dst) as copied, open_store(reference) as direct:
        for q in records[:5]:
            assert same_ranking(direct.search_bm25(q.chunk.text, 10), copied.search_bm25(q.chunk.text, 10))


def test_a_collection_without_dense_vectors_copies_both_ways(tmp_path):
    """Found by the #23 signals work: a collection built with ``--dense-model none`` failed every
    copy ("Not existing vector name error: dense"): reads asked for a vector it does not have."""
    schema = dataclasses.replace(SCHEMA, dense_model=None, dense_dim=None)
    records = [dataclasses.replace(r, dense=None) for r in make_records(20)]
    src = f"qdrant-edge://{tmp_path / 'a'}"
    build(src, records, schema)
    for dest, files in (
        (f"qdrant-edge://{tmp_path / 'b'}", False),
        (f"qdrant-edge://{tmp_path / 'd'}", True),
        (f"parquet://{tmp_path / 'p.parquet'}", True),
    ):
        report = copy_collection(src, dest, batch_size=7, sample=5, files=files)
        assert report.destination_count == 20 and report.vectors_checked == 5
    loaded = copy_collection(f"parquet://{tmp_path / 'p.parquet'}", f"qdrant-edge://{tmp_path / 'c'}", batch_size=7)
    assert loaded.destination_count == 20
    assert_same_points(contents(src), contents(f"qdrant-edge://{tmp_path / 'c'}"))


def test_a_new_embedded_destination_gets_the_engine_files_and_searches_the_same(tmp_path):
    records = make_records(40, chunks_per_doc=2)
    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, records)
    progress: list[tuple[int, int]] = []
    report = copy_collection(src, dst, sample=10, on_progress=lambda d, t: progress.append((d, t)))
    assert any("engine's files" in note for note in report.notes)
    assert report.copied == 80 and report.destination_count == 80 and report.vectors_checked == 10
    assert report.queries_checked == 5
    assert progress[-1] == (80, 80) and all(a <= b for (a, _), (b, _) in itertools.pairwise(progress))
    assert not (tmp_path / "b" / ".shard-copy.partial").exists()
    assert_same_points(contents(src), contents(dst))
    with open_store(src) as a, open_store(dst) as b:
        assert b.schema == a.schema and b.schema is not None and b.schema.fusion == FUSION
        for q in records[:5]:
            assert same_ranking(
                a.search_fused(sparse=q.sparse, dense=q.dense), b.search_fused(sparse=q.sparse, dense=q.dense)
            )
        # Two stores from then on: a write to the copy leaves the source as it was.
        b.upsert(make_records(3, prefix="new"))
        assert b.count() == 83 and a.count() == 80


def test_a_file_copy_killed_midway_leaves_no_collection_and_runs_again(tmp_path, monkeypatch):
    from sparsehybrid.connectors import file_copy

    monkeypatch.setattr(file_copy, "PIECE", 4096)  # many progress calls, so one comes midway
    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, make_records(30))

    class Killed(Exception):
        pass

    def die_midway(done: int, total: int) -> None:
        if 0 < done < total:
            raise Killed

    with pytest.raises(Killed):
        copy_collection(src, dst, on_progress=die_midway)
    leftovers = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert leftovers == [".sparsehybrid.lock"]  # no shard, no half-copied folder, no schema
    with open_store(dst) as nothing:
        assert nothing.schema is None and nothing.count() == 0
    report = copy_collection(src, dst)
    assert report.destination_count == 30
    assert_same_points(contents(src), contents(dst))


def test_a_file_copy_without_the_room_for_it_is_refused_in_one_line(tmp_path, monkeypatch):
    from sparsehybrid.connectors import qdrant_edge

    src, dst = f"qdrant-edge://{tmp_path / 'a'}", f"qdrant-edge://{tmp_path / 'b'}"
    build(src, make_records(10))
    monkeypatch.setattr(qdrant_edge, "free_bytes", lambda path: qdrant_edge.MIN_FREE_MB * 2**20 + 1)
    with pytest.raises(StoreError) as err:
        copy_collection(src, dst)
    assert "\n" not in str(err.value) and "free some space and run again" in str(err.value)
    monkeypatch.undo()
    assert copy_collection(src, dst).destination_count == 10  # nothing was left locked or half-made


@pytest.mark.parametrize(
    ("source_mode", "dest_option", "by_files"),
    [("ram", "?storage=disk", False), ("disk", "?storage=ram", False), ("ram", "", True), ("disk", "", True)],
)
def test_the_files_are_copied_only_into_the_source_storage_mode(tmp_path, source_mode, dest_option, by_files):
    """A URL that asks for another ``?storage=`` gets its own kind of store, point by point; one
    that asks for none gets the source's, as files."""
    from sparsehybrid.connectors.qdrant_edge import SHARD_DIR, persisted_storage

    src = f"qdrant-edge://{tmp_path / 'a'}?storage={source_mode}"
    dst = f"qdrant-edge://{tmp_path / 'b'}{dest_option}"
    build(src, make_records(20))
    report = copy_collection(src, dst, batch_size=7)
    assert any("engine's files" in note for note in report.notes) is by_files
    assert report.destination_count == 20
    expected = dest_option.removeprefix("?storage=") or source_mode
    assert persisted_storage(tmp_path / "b" / SHARD_DIR) == expected

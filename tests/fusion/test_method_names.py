"""``minmax`` is min-max fusion's name; ``weighted``, its old one, is accepted everywhere."""

from __future__ import annotations

import pytest

from sparsehybrid.fusion import FusionSetting, fuse
from sparsehybrid.search import SearchOptions

RANKINGS = {"sparse": [("a", 3.0), ("b", 2.0), ("c", 0.5)], "bm25": [("c", 9.0), ("a", 1.0)]}


def test_weighted_is_an_alias_of_minmax():
    assert fuse("weighted", RANKINGS, weights={"bm25": 2.0}) == fuse("minmax", RANKINGS, weights={"bm25": 2.0})
    assert fuse("minmax", RANKINGS) != fuse("rrf", RANKINGS)


def test_a_setting_recorded_under_the_old_name_loads_as_minmax():
    old = FusionSetting.from_dict({"method": "weighted", "k": 60, "weights": {"bm25": 0.5}})
    assert old == FusionSetting("minmax", 60, {"bm25": 0.5})
    assert old.to_dict()["method"] == "minmax" and old.describe().startswith("minmax")


def test_requests_accept_both_names_and_refuse_others():
    assert SearchOptions(fusion="weighted").fusion in ("weighted", "minmax")
    assert SearchOptions(fusion="minmax").fusion == "minmax"
    with pytest.raises(ValueError, match="unknown fusion 'borda'"):
        fuse("borda", RANKINGS)

"""How the entity query writes values and reads IN lists, as ThingsBoard's entity query does."""

from __future__ import annotations

import pytest

from thingsray.storage.entity_query import split_by_comma, tb_value


@pytest.mark.parametrize("columns, text", [
    ((True, None, None, None, None), "true"),
    ((None, None, 42, None, None), "42"),
    ((None, None, None, 36.6, None), "36.6"),
    ((None, None, None, 25.0, None), "25"),      # PostgreSQL's "25", read back as a Java long
    ((None, None, None, 1e20, None), "1.0E20"),  # PostgreSQL's "1e+20", read back as a Java double
    ((None, "007", None, None, None), "7"),
    ((None, "1.50", None, None, None), "1.5"),
    ((None, "on", None, None, None), "on"),
    ((None, None, None, None, '{"a":1}'), '{"a":1}'),
    ((None, None, None, None, None), ""),
])
def test_latest_values_are_thingsboards_strings(columns, text):
    assert tb_value(*columns) == text


def test_in_lists_split_on_commas_outside_quotes():
    assert split_by_comma('a, b ,"c, d"') == ["a", "b", "c, d"]

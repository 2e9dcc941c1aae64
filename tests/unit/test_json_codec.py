"""The project's JSON: fast where orjson is exact, the standard library where it is not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiktok_amp_assets.core.json_codec import dump_json, load_json

HALF_EMOJI = "\ud83d"  # a lone surrogate: JSON can carry it, UTF-8 cannot

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_any_value_of_64_bit_ints_round_trips_exactly(value: Any) -> None:
    assert load_json(dump_json(value)) == value


def test_output_is_compact_utf8() -> None:
    assert dump_json({"name": "Café ✓", "n": [1, 2]}) == '{"name":"Café ✓","n":[1,2]}'.encode()


@pytest.mark.parametrize(
    "value",
    [{"ad_name": f"Sale {HALF_EMOJI}"}, {"impressions": 2**80}, {"negative": -(2**70)}],
    ids=["lone surrogate", "int beyond 64 bits", "negative int beyond 64 bits"],
)
def test_what_orjson_cannot_encode_is_written_exactly_in_ascii(value: dict[str, Any]) -> None:
    encoded = dump_json(value)
    encoded.decode("ascii")  # storable and sendable anywhere
    assert json.loads(encoded) == value
    assert load_json(encoded) == value


def test_text_orjson_refuses_is_read_by_the_standard_library() -> None:
    assert load_json('{"ad_name":"Sale \\ud83d"}') == {"ad_name": f"Sale {HALF_EMOJI}"}


def test_malformed_json_still_fails() -> None:
    with pytest.raises(ValueError):
        load_json(b'{"truncated":')

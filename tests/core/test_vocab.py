"""The shared vocabulary: one cost format for people (what is billed), one status list."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from otel_chronograph._config import StatusConfig
from otel_chronograph._lap import Status as LapStatus
from otel_chronograph._vocab import STATUS_COLOURS, STATUSES, Status, format_cost, format_ms
from otel_chronograph.billing._sink import cost_micros


@given(st.decimals(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False))
def test_costs_for_people_have_six_decimals_and_show_what_is_billed(cost: Decimal) -> None:
    shown = format_cost(cost)
    assert re.fullmatch(r"\d+\.\d{6}", shown), shown
    assert int(Decimal(shown) * 1_000_000) == cost_micros(cost)


def test_one_status_list_everywhere() -> None:
    assert get_args(Status) == STATUSES == get_args(LapStatus)
    assert set(STATUS_COLOURS) == set(STATUSES)
    assert set(get_args(StatusConfig.model_fields["on_error"].annotation)) == {*STATUSES, "time"}


def test_milliseconds() -> None:
    assert [format_ms(m) for m in (2370.0, 45.5, 1.234, 0.2345)] == ["2370ms", "45.5ms", "1.23ms", "0.234ms"]
    assert format_ms(45, 1) == "45.0ms"

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.core.errors import RoostError
from roost.core.units import duration_seconds, format_go_duration, parse_go_duration, parse_signal


@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("0", 0), ("1.5s", 1.5), ("2m", 120), ("100us", 1e-4),
])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "10", "abc", "1x", "s"])
def test_bad_durations_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_go_duration(bad)


def test_duration_numbers_are_nanoseconds_in_the_api_and_errors_name_the_field():
    assert duration_seconds(5_000_000_000, field="t") == 5
    with pytest.raises(RoostError) as err:
        duration_seconds("later", field="stop_config.timeout")
    assert err.value.status == 400 and "stop_config.timeout" in err.value.message


@given(st.floats(min_value=0.001, max_value=100_000))
def test_format_round_trips(seconds):
    assert parse_go_duration(format_go_duration(seconds)) == pytest.approx(seconds, rel=1e-3, abs=1e-3)


@pytest.mark.parametrize(("value", "number"), [("SIGTERM", 15), ("term", 15), ("9", 9), (9, 9), ("SIGINT", 2)])
def test_signals(value, number):
    assert parse_signal(value) == number


@pytest.mark.parametrize("bad", ["SIGNOPE", True, 0, 99, None, 1.5])
def test_bad_signals(bad):
    with pytest.raises(RoostError) as err:
        parse_signal(bad)
    assert err.value.status == 400


def test_sizes_in_bytes() -> None:
    from roost.core.errors import RoostError
    from roost.core.units import size_bytes

    assert size_bytes(1048576, field="f") == size_bytes("1MB", field="f") == size_bytes("1 mib", field="f")
    assert size_bytes("512k", field="f") == 512 * 1024 and size_bytes("0", field="f") == 0
    for bad in ("lots", "1.5MB", -1, True, "10TB", None):
        try:
            size_bytes(bad, field="http_options.max_request_body_size")
        except RoostError as exc:
            assert exc.status == 400 and exc.message.startswith("http_options.max_request_body_size")
        else:
            raise AssertionError(f"{bad!r} accepted")

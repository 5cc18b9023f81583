"""The Acme rows of test/e2e's flight_types (flightTypesSQL), as Python
values: what every client must read, exactly."""
import datetime as dt
from decimal import Decimal

UTC = dt.timezone.utc

# id -> column -> value; a column left out is NULL.
ROWS = {
    1: {
        "c_int2": -32768, "c_int4": -2147483648, "c_int8": -9223372036854775808,
        "c_float4": -3.4028234663852886e38, "c_float8": -1.7976931348623157e308,
        "c_num": Decimal("-99999999999999999999999999999999.999999"), "c_money": Decimal("-0.01"),
        "c_bool": False, "c_text": "", "c_uuid": bytes(16),
        "c_date": dt.date(1, 1, 1), "c_ts": dt.datetime(1, 1, 1),
        "c_tstz": dt.datetime(2026, 3, 28, 23, 30, 0, 123456, tzinfo=UTC),
        "c_bytea": b"", "c_jsonb": "[]", "c_int8s": [], "c_texts": [],
    },
    2: {
        "c_int2": 32767, "c_int4": 2147483647, "c_int8": 9223372036854775807,
        "c_float4": float("nan"), "c_float8": float("inf"),
        "c_num": Decimal("99999999999999999999999999999999.999999"), "c_money": Decimal("9999999999.99"),
        "c_bool": True, "c_text": 'h\u00e9llo, "w\u00f6rld"\n\t\U0001F353', "c_uuid": b"\xff" * 16,
        "c_date": dt.date(9999, 12, 31), "c_ts": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "c_tstz": dt.datetime(1970, 1, 1, 7, 59, 59, 999999, tzinfo=UTC),
        "c_bytea": b"\x00\xff\x10", "c_jsonb": '{"a": [1, 2.5, null, "x"], "b": {"c": true}}',
        "c_int8s": [1, None, -9223372036854775808], "c_texts": ["a", None, "", "b,c"],
    },
    3: {},
    5: {
        "c_int8": 7, "c_float4": 1.401298464324817e-45, "c_float8": 5e-324,
        "c_num": Decimal("0.000001"), "c_money": Decimal("12.30"), "c_text": "five",
        "c_date": dt.date(1970, 1, 1), "c_tstz": dt.datetime(2000, 1, 1, tzinfo=UTC), "c_jsonb": "null",
    },
}

COLUMNS = ["id", "c_int2", "c_int4", "c_int8", "c_float4", "c_float8", "c_num", "c_money", "c_bool",
           "c_text", "c_uuid", "c_date", "c_ts", "c_tstz", "c_bytea", "c_jsonb", "c_int8s", "c_texts"]

ARROW_TYPES = {
    "id": "int64", "c_int2": "int16", "c_int4": "int32", "c_int8": "int64", "c_float4": "float",
    "c_float8": "double", "c_num": "decimal128(38, 6)", "c_money": "decimal128(12, 2)", "c_bool": "bool",
    "c_text": "string", "c_uuid": "fixed_size_binary[16]", "c_date": "date32[day]", "c_ts": "timestamp[us]",
    "c_tstz": "timestamp[us, tz=UTC]", "c_bytea": "binary", "c_jsonb": "string",
    "c_int8s": "list<item: int64>", "c_texts": "list<item: string>",
}


def expected(row_id, col):
    return ROWS[row_id].get(col)


def same(a, b):
    """Equality where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b

"""CSV reading and export: columns by header name, clear errors, inert formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.ui import csvio
from app.web.errors import APIError

SCHEMA = {"feature_names": ["a", "b", "c"], "n_features": 3, "allow_nan": False}


def read(text: str, schema=SCHEMA, max_rows: int = 100):
    return csvio.read_csv(text.encode(), schema, max_rows)


@pytest.mark.parametrize(
    "cell, exported",
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+SUM(A1:A2)", "'+SUM(A1:A2)"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("-1.5", "-1.5"),  # a plain number is no formula and stays a number
        ("+3", "+3"),
        ("-2.5e-3", "-2.5e-3"),
        ("plain text", "plain text"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_export_neutralises_formulas_but_not_numbers(cell, exported):
    assert csvio.neutralise(cell) == exported
    line = next(csvio.export_lines([[cell]]))
    assert line.rstrip("\r\n").strip('"').replace('""', '"') == exported


def test_columns_are_found_by_name_in_any_order_and_extras_are_kept():
    parsed = read("id,c,note,a,b\n7,3,hello,1,2\n8,6,,4,5\n")
    np.testing.assert_array_equal(
        csvio.to_matrix(parsed, 0, 2, SCHEMA), [[1, 2, 3], [4, 5, 6]]
    )
    rows = list(csvio.result_rows(parsed, 0, np.array(["x", "y"]), None))
    assert rows == [["7", "3", "hello", "1", "2", "x"], ["8", "6", "", "4", "5", "y"]]
    assert csvio.result_header(parsed, ["x", "y"], True) == [
        "id",
        "c",
        "note",
        "a",
        "b",
        "prediction",
        "probability_x",
        "probability_y",
    ]


def test_missing_columns_are_named():
    with pytest.raises(APIError) as error:
        read("b,other\n1,2\n")
    assert error.value.code == "missing_feature" and error.value.status == 400
    assert error.value.message.startswith("missing column(s): a, c ")


def test_byte_order_mark_and_blank_lines_are_ignored():
    parsed = read("\ufeffa,b,c\n1,2,3\n\n4,5,6\n\n")
    assert len(parsed) == 2 and parsed.lines == [2, 4]


@pytest.mark.parametrize(
    "text, code, status, words",
    [
        ("", "empty_batch", 400, "empty"),
        ("a,b,c\n", "empty_batch", 400, "no rows"),
        ("a,b,c\n1,2\n", "ragged_row", 400, "line 2 has 2 cells"),
        ("a,a,b,c\n1,1,2,3\n", "duplicate_column", 400, "a"),
        ("a,b,c\n" + "1,2,3\n" * 101, "batch_too_large", 413, "more than 100 rows"),
    ],
)
def test_bad_files_get_clear_errors(text, code, status, words):
    with pytest.raises(APIError) as error:
        read(text)
    assert (error.value.code, error.value.status) == (code, status)
    assert words in error.value.message


def test_files_that_are_not_utf8_are_refused():
    with pytest.raises(APIError) as error:
        csvio.read_csv(b"a,b,c\n\xff\xfe,1,2\n", SCHEMA, 10)
    assert error.value.code == "invalid_csv"


def test_bad_cells_are_reported_by_line_and_column():
    parsed = read("a,b,c\n1,2,3\n4,five,6\n")
    with pytest.raises(APIError) as error:
        csvio.to_matrix(parsed, 0, 2, SCHEMA)
    assert error.value.code == "non_numeric_value"
    assert error.value.message == "line 3, column 'b': 'five' is not a number"
    empty = read("a,b,c\n1,,3\n")
    with pytest.raises(APIError) as error:
        csvio.to_matrix(empty, 0, 1, SCHEMA)
    assert error.value.code == "non_finite_value"
    assert "line 2, column 'b': an empty cell" in error.value.message
    infinite = read("a,b,c\n1,2,inf\n")
    with pytest.raises(APIError, match="column 'c': 'inf'"):
        csvio.to_matrix(infinite, 0, 1, SCHEMA)


def test_empty_cells_are_missing_values_for_models_that_allow_them():
    schema = {**SCHEMA, "allow_nan": True}
    matrix = csvio.to_matrix(read("a,b,c\n1,,3\n", schema), 0, 1, schema)
    assert math.isnan(matrix[0, 1]) and matrix[0, 2] == 3


def test_form_rows_use_the_api_validation():
    matrix = csvio.row_from_text(["1", " 2.5 ", "-3"], SCHEMA, 10)
    np.testing.assert_array_equal(matrix, [[1, 2.5, -3]])
    with pytest.raises(APIError) as error:
        csvio.row_from_text(["1", "x", "3"], SCHEMA, 10)
    assert csvio.field_index(error.value) == 1
    with pytest.raises(APIError) as error:
        csvio.row_from_text(["1", "2", ""], SCHEMA, 10)
    assert error.value.code == "missing_value" and error.value.message == "required"
    assert csvio.field_index(error.value) == 2
    # Every bad field at once, each with its own message.
    with pytest.raises(csvio.FormRowError) as error:
        csvio.row_from_text(["", "x", "inf"], SCHEMA, 10)
    assert error.value.messages == {
        0: "required",
        1: "'x' is not a number",
        2: "'inf' is not a finite number",
    }

"""The inputs of a pyfunc ``predict`` as MLflow hands them over, turned into one DataFrame of rows.

``mlflow.pyfunc.load_model(...).predict`` and ``mlflow models serve`` pass what the caller sent, after
the signature's enforcement:

    pandas.DataFrame                 dataframe_split / dataframe_records, or a DataFrame in Python
    {"column": [v0, v1, ...]}        ``inputs``: column-oriented, one entry per row (numpy arrays too)...
    {"column": v}                    ...but one row when every value is a scalar (a string, a number, None)
    {"column": ["a", "b"]}           ...or a list of strings: MLflow reads that as one row (its rule, kept
                                     here so that both paths agree); ``scalar`` columns expand it back
    [{"column": v0}, {"column": v1}] a list of records

Each domain's ``services/<domain>/pyfunc.py`` calls :func:`frame` with the columns its REST API takes, and
:func:`integer` / :func:`flag` for its params; a bad input is a ``ValueError`` naming the column (or
param) and the rule. Imports numpy and pandas only (no mlflow), so domain code may use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

SHAPES = "a pandas DataFrame, a dict of columns ({column: [value per row]}) or a list of records"


def frame(
    model_input: Any,
    *,
    required: Iterable[str],
    optional: Iterable[str] = (),
    scalar: Iterable[str] = (),
    what: str = "model input",
) -> pd.DataFrame:
    """``model_input`` as a DataFrame with the ``required`` columns (and any of ``optional``); missing
    values are ``None`` (never NaN), so a cell holds what the caller sent. ``scalar``: the columns that
    hold one string or number per row (a single row holding lists of strings there is expanded)."""
    required, optional, scalar = list(required), list(optional), list(scalar)
    if isinstance(model_input, pd.Series):
        model_input = model_input.to_frame()
    if isinstance(model_input, pd.DataFrame):
        df = model_input.reset_index(drop=True)
    elif isinstance(model_input, Mapping):
        df = _from_columns(model_input)
    elif isinstance(model_input, list | tuple) and model_input and all(isinstance(r, Mapping) for r in model_input):
        df = pd.DataFrame.from_records(list(model_input))
    else:
        raise ValueError(f"{what} must be {SHAPES}; got {type(model_input).__name__}")
    df.columns = [str(c) for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs the column(s) {missing}; got {list(df.columns)}")
    unknown = [c for c in df.columns if c not in required and c not in optional]
    if unknown:
        raise ValueError(f"{what} has unknown column(s) {unknown}; the columns are {required + optional}")
    if df.empty:
        raise ValueError(f"{what} has no rows")
    df = df.astype(object).where(df.notna(), None)
    return _expand_strings(df, [c for c in scalar if c in df.columns])


def integer(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    """Param ``name`` as an int in ``[low, high]`` (``default`` when absent)."""
    value = params.get(name, default)
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"param {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"param {name} must be in [{low}, {high}], got {value}")
    return value


def flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"param {name} must be true or false, got {value!r}")
    return bool(value)


def no_other_params(params: Mapping[str, Any], known: Iterable[str]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"unknown param(s) {unknown}; the params are {sorted(known) or 'none'}")


def sequence_of(value: Any) -> list | None:
    """A list/tuple/1-d+ array cell as a list (numpy arrays from MLflow's ``inputs`` included), else None."""
    if isinstance(value, np.ndarray):
        return list(value) if value.ndim else None
    if isinstance(value, list | tuple):
        return list(value)
    return None


def _is_scalar(v: Any) -> bool:
    return (
        v is None
        or isinstance(v, str | bytes | int | float | bool | np.generic)
        or (isinstance(v, np.ndarray) and v.ndim == 0)
    )


def _strings(v: Any) -> list | None:
    cells = sequence_of(v)
    return cells if cells is not None and all(isinstance(x, str | bytes | np.str_) for x in cells) else None


def _expand_strings(df: pd.DataFrame, scalar: list[str]) -> pd.DataFrame:
    if len(df) != 1 or not scalar:
        return df
    lists = {c: _strings(df.at[0, c]) for c in scalar}
    if any(v is None for v in lists.values()):
        return df
    lengths = {c: len(v) for c, v in lists.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the columns must have one value per row each; their lengths are {lengths}")
    n = next(iter(lengths.values()))
    return pd.DataFrame({c: lists[c] if c in lists else [df.at[0, c]] * n for c in df.columns}, dtype=object)


def _from_columns(columns: Mapping[str, Any]) -> pd.DataFrame:
    if all(_is_scalar(v) or _strings(v) is not None for v in columns.values()):
        one = {k: v.item() if isinstance(v, np.ndarray | np.generic) and v.ndim == 0 else v for k, v in columns.items()}
        return pd.DataFrame([{k: list(v) if isinstance(v, np.ndarray) else v for k, v in one.items()}], dtype=object)
    lengths = {}
    data = {}
    for name, values in columns.items():
        cells = sequence_of(values)
        if cells is None:
            raise ValueError(
                f"column {name} must hold one value per row (a list), got {type(values).__name__}; "
                "in a dict input every value is a column"
            )
        data[name], lengths[name] = cells, len(cells)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the columns must have one value per row each; their lengths are {lengths}")
    # built cell by cell: pandas would turn a column of equal-length lists into a 2-d block
    n = next(iter(lengths.values()), 0)
    records = [{name: cells[i] for name, cells in data.items()} for i in range(n)]
    return pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(data))

"""The typed rows (storage/rows.py) list their tables' columns, with their types."""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import JSON, Table, TypeDecorator

from apitask_auth.storage import rows
from apitask_auth.storage.tables import flow_state, identities, mfa_factors, sessions, users


def _python_type(table: Table, name: str) -> type[Any]:
    column_type = table.c[name].type
    if isinstance(column_type, TypeDecorator):  # UTCDateTime: its python_type is object
        column_type = column_type.impl_instance
    if isinstance(column_type, JSON):
        return dict if name != "amr" else list
    python_type: type[Any] = column_type.python_type
    return python_type


@pytest.mark.parametrize(
    ("row", "table"),
    [
        (rows.User, users),
        (rows.Identity, identities),
        (rows.Session, sessions),
        (rows.FlowState, flow_state),
        (rows.Factor, mfa_factors),
    ],
)
def test_typed_row_matches_its_table(row: type[Any], table: Table) -> None:
    """Every column is a key, in the table's order; nullable columns are ``| None``;
    each key's type is the column's Python type."""
    hints = typing.get_type_hints(row, localns={"datetime": datetime})  # imported for mypy only
    assert list(hints) == list(table.c.keys())
    for name, hint in hints.items():
        options = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
        assert (type(None) in options) == table.c[name].nullable, name
        (declared,) = options - {type(None)}
        assert (typing.get_origin(declared) or declared) is _python_type(table, name), name

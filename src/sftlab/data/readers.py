"""Read CSV, TSV, JSON, JSONL and Parquet files into rows, with errors that name the file and line.

Every row keeps where it came from (`Table.where(i)`), so later checks (a missing label, an empty text)
can point the user at the exact line to fix.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftlab.errors import SftlabError

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".conll": "conll",
}


@dataclass
class Table:
    """Rows of one file, each with its line number (or record number for JSON arrays and Parquet)."""

    path: Path
    rows: list[dict[str, Any]]
    positions: list[int] = field(default_factory=list)
    unit: str = "line"
    row_paths: list[Path] | None = None
    """Per row, the file it came from, when rows of several files are joined (see concat_tables)."""

    def where(self, index: int) -> str:
        path = self.row_paths[index] if self.row_paths is not None else self.path
        return f"{path} {self.unit} {self.positions[index]}"

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices: list[int]) -> Table:
        row_paths = None if self.row_paths is None else [self.row_paths[i] for i in indices]
        return Table(self.path, [self.rows[i] for i in indices], [self.positions[i] for i in indices], self.unit,
                     row_paths)  # fmt: skip

    def column_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows[:100]:
            names.update(dict.fromkeys(row))
        return list(names)


def concat_tables(tables: list[Table]) -> Table:
    """The rows of several tables as one; each row's `where` still names its own file and line."""
    first = tables[0]
    rows, positions, paths = [], [], []
    for table in tables:
        rows += table.rows
        positions += table.positions
        paths += table.row_paths if table.row_paths is not None else [table.path] * len(table.rows)
    return Table(first.path, rows, positions, first.unit, paths)


def read_table(path: Path | str) -> Table:
    """Read a data file by its suffix; raises SftlabError naming the file and line for any problem."""
    path = Path(path)
    if not path.exists():
        raise SftlabError(f"{path}: file not found")
    if path.is_dir():
        raise SftlabError(f"{path}: is a directory, expected a data file ({', '.join(SUFFIXES)})")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SftlabError(
            f"{path}: unsupported file type '{path.suffix}', expected one of {', '.join(SUFFIXES)}"
        )
    if kind == "parquet":
        table = _read_parquet(path)
    else:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = raw[: error.start].count(b"\n") + 1
            raise SftlabError(f"{path} line {line}: not valid UTF-8 (byte offset {error.start})") from None
        if kind in ("csv", "tsv"):
            table = _read_delimited(path, text, "," if kind == "csv" else "\t")
        elif kind == "jsonl":
            table = _read_jsonl(path, text)
        elif kind == "conll":
            table = read_conll(path, text)
        else:
            table = _read_json(path, text)
    if not table.rows:
        raise SftlabError(f"{path}: no data rows")
    return table


def _read_delimited(path: Path, text: str, delimiter: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise SftlabError(f"{path} line 1: malformed header: {error}") from None
    if header is None or not any(name.strip() for name in header):
        raise SftlabError(f"{path}: empty file, expected a header line with column names")
    header = [name.strip() for name in header]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise SftlabError(f"{path} line 1: duplicate column name(s) {', '.join(duplicates)}")
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    line = reader.line_num
    while True:
        start = line + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise SftlabError(
                f"{path} line {reader.line_num}: malformed {'CSV' if delimiter == ',' else 'TSV'}: {error}"
            ) from None
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise SftlabError(
                f"{path} line {start}: expected {len(header)} fields ({', '.join(header)}), found {len(values)}"
            )
        rows.append(dict(zip(header, values, strict=True)))
        positions.append(start)
    return Table(path, rows, positions, "line")


def _read_jsonl(path: Path, text: str) -> Table:
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise SftlabError(
                f"{path} line {number}: invalid JSON: {error.msg} (column {error.colno})"
            ) from None
        if not isinstance(row, dict):
            raise SftlabError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
        positions.append(number)
    return Table(path, rows, positions, "line")


def _read_json(path: Path, text: str) -> Table:
    if not text.strip():
        raise SftlabError(f"{path}: empty file, expected a JSON array of objects")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SftlabError(
            f"{path} line {error.lineno}: invalid JSON: {error.msg} (column {error.colno})"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise SftlabError(
            f'{path}: expected a JSON array of objects (or {{"data": [...]}}), got {type(data).__name__}'
        )
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise SftlabError(f"{path} record {number}: expected a JSON object, got {type(row).__name__}")
    return Table(path, data, list(range(1, len(data) + 1)), "record")


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise SftlabError(f"{path}: reading Parquet needs pyarrow (pip install 'sftlab[parquet]')") from None
    try:
        rows = parquet.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several unrelated types for a corrupt file
        raise SftlabError(f"{path}: not a readable Parquet file: {str(error).splitlines()[0]}") from None
    return Table(path, rows, list(range(1, len(rows) + 1)), "row")


def read_conll(path: Path, text: str) -> Table:
    """CoNLL columns: one token per line (`token ... tag`, split on whitespace), a blank line between
    sentences, `-DOCSTART-` lines skipped. Each sentence becomes a row {"tokens": [...], "fields": [[...]]}
    (`fields[k]` is column k for every token); every line must have as many columns as the first."""
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    width: int | None = None
    tokens: list[list[str]] = []
    start = 0

    def close() -> None:
        if tokens:
            rows.append(
                {"tokens": [t[0] for t in tokens], "fields": [list(c) for c in zip(*tokens, strict=True)]}
            )
            positions.append(start)
            tokens.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            close()
            continue
        if parts[0] == "-DOCSTART-":
            close()
            continue
        if width is None:
            width = len(parts)
            if width < 2:
                raise SftlabError(f"{path} line {number}: expected 'token ... tag' columns, found 1 column")
        if len(parts) != width:
            raise SftlabError(
                f"{path} line {number}: expected {width} whitespace-separated columns (as on the first "
                f"token line), found {len(parts)}"
            )
        if not tokens:
            start = number
        tokens.append(parts)
    close()
    return Table(path, rows, positions, "line")


def require_columns(table: Table, columns: list[str]) -> None:
    """Every row must have each column; names the first row that lacks one."""
    for column in columns:
        for index, row in enumerate(table.rows):
            if column not in row:
                available = ", ".join(table.column_names()) or "none"
                raise SftlabError(f"{table.where(index)}: missing column '{column}' (columns: {available})")


def require_texts(table: Table, column: str) -> list[str]:
    """The column's values as non-empty strings; names the first empty or non-text one."""
    texts: list[str] = []
    for index, row in enumerate(table.rows):
        value = row[column]
        if not isinstance(value, str):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise SftlabError(f"{table.where(index)}: empty '{column}'")
            raise SftlabError(
                f"{table.where(index)}: '{column}' must be text, got {type(value).__name__} {value!r}"
            )
        if not value.strip():
            raise SftlabError(f"{table.where(index)}: empty '{column}'")
        texts.append(value)
    return texts


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as sink:
        for row in rows:
            sink.write(json.dumps(row, ensure_ascii=False) + "\n")

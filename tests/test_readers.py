import json

import pytest

from sftlab.data.readers import read_table, require_columns, require_texts
from sftlab.errors import SftlabError


def write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_each_format_reads_the_same_rows(tmp_path):
    rows = [{"text": "a, b", "label": "x"}, {"text": "c", "label": "y"}]
    csv_path = write(tmp_path / "d.csv", 'text,label\n"a, b",x\nc,y\n')
    tsv_path = write(tmp_path / "d.tsv", "text\tlabel\na, b\tx\nc\ty\n")
    jsonl_path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    json_path = write(tmp_path / "d.json", json.dumps(rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for path in (csv_path, tsv_path, jsonl_path, json_path, tmp_path / "d.parquet"):
        assert read_table(path).rows == rows, path


def test_positions_point_at_the_file_line(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\n"multi\nline",x\n\nc,y\n')
    table = read_table(path)
    assert table.positions == [2, 5]
    assert table.where(1) == f"{path} line 5"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "ragged.csv",
            "text,label\na,x\nb,y,z\n",
            r"ragged.csv line 3: expected 2 fields \(text, label\), found 3",
        ),
        ("empty.csv", "", "empty.csv: empty file"),
        ("header_only.csv", "text,label\n", "header_only.csv: no data rows"),
        ("dup.csv", "text,text\na,b\n", "dup.csv line 1: duplicate column name"),
        ("broken.jsonl", '{"text": "a"}\n{"text": \n', "broken.jsonl line 2: invalid JSON"),
        ("array.jsonl", '{"text": "a"}\n[1, 2]\n', "array.jsonl line 2: expected a JSON object"),
        ("scalar.json", '"hello"', "scalar.json: expected a JSON array"),
        ("items.json", '[{"text": "a"}, 3]', "items.json record 2: expected a JSON object"),
        ("empty.json", "  ", "empty.json: empty file"),
        ("data.xlsx", "x", r"unsupported file type '.xlsx'"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, name, content, message):
    with pytest.raises(SftlabError, match=message):
        read_table(write(tmp_path / name, content))


def test_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "latin.csv", b"text,label\nok,x\ncaf\xe9,y\n", mode="wb")
    with pytest.raises(SftlabError, match=r"latin.csv line 3: not valid UTF-8"):
        read_table(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SftlabError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(SftlabError, match="is a directory"):
        read_table(tmp_path)


def test_missing_column_and_empty_text(tmp_path):
    table = read_table(write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n{"txt": "b", "label": 0}\n'))
    with pytest.raises(
        SftlabError, match=r"d.jsonl line 2: missing column 'text' \(columns: text, label, txt\)"
    ):
        require_columns(table, ["text"])
    table = read_table(write(tmp_path / "e.csv", "text,label\nhello,1\n  ,0\n"))
    with pytest.raises(SftlabError, match=r"e.csv line 3: empty 'text'"):
        require_texts(table, "text")
    table = read_table(write(tmp_path / "n.jsonl", '{"text": 5, "label": 1}\n'))
    with pytest.raises(SftlabError, match=r"n.jsonl line 1: 'text' must be text, got int 5"):
        require_texts(table, "text")

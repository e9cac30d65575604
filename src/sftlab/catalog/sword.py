"""Read SWORD zText Bible modules (as packaged by Debian's sword-text-*) into plain-text verses.

A zText module holds, per testament (`ot`, `nt`), three files:
- `.bzs`: one 12-byte record per compressed block: offset in `.bzz`, compressed size, uncompressed size;
- `.bzv`: one 10-byte record per index slot: block number, offset inside the uncompressed block, size;
- `.bzz`: the zlib-compressed blocks, one after another.
All integers are little-endian. Slots follow the module's versification: slot 0 and 1 are the testament
headers, then each book has a heading slot, and each chapter a heading slot followed by its verses. Both
Debian modules used here (KJV and Reina-Valera 1909) use KJV versification, so equal slots are equal
verses. OSIS markup is stripped: notes and titles with their content, every other tag keeping its text.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from sftlab.errors import SftlabError

# Start markers carry sID; the end markers (eID) that close a book or chapter sit inside its last verse.
DIV_TAG = re.compile(r"<div\b[^>]*>")
START_ID = re.compile(r"\bsID=")  # not osisID=, which also contains "sID="
OSIS_ID = re.compile(r'\bosisID="([^"]+)"')
CHAPTER_START = re.compile(r'<chapter\b[^>]*\bosisID="([^".]+)\.(\d+)"[^>]*\bsID=')
# Footnotes and editors' headings go with their content; canonical titles (psalm superscriptions) stay,
# as the Spanish module has them in the verse text itself.
DROPPED_ELEMENTS = re.compile(r'<(note|title)\b(?![^>]*canonical="true")[^>]*?(?<!/)>.*?</\1>', re.DOTALL)
PILCROW = re.compile(r"¶")
TAG = re.compile(r"<[^>]*>")
SPACE = re.compile(r"\s+")
SPACE_BEFORE_PUNCTUATION = re.compile(r" +([,.;:!?)])")
SPACE_AFTER_OPENING = re.compile(r"([¡¿(]) +")


@dataclass(frozen=True)
class Verse:
    reference: str
    """OSIS reference, e.g. Gen.1.1."""
    text: str


def read_slots(folder: Path, testament: str) -> list[str]:
    """The raw (markup) text of every index slot of one testament, '' for empty slots."""
    try:
        blocks_index = (folder / f"{testament}.bzs").read_bytes()
        verse_index = (folder / f"{testament}.bzv").read_bytes()
        compressed = (folder / f"{testament}.bzz").read_bytes()
    except OSError as error:
        raise SftlabError(
            f"{folder}: not a SWORD zText module ({error.strerror}: {error.filename})"
        ) from None
    if len(blocks_index) % 12 or len(verse_index) % 10:
        raise SftlabError(
            f"{folder}: corrupt zText index ({testament}.bzs or {testament}.bzv has a partial record)"
        )
    blocks = [struct.unpack_from("<III", blocks_index, start) for start in range(0, len(blocks_index), 12)]
    cache: dict[int, bytes] = {}
    slots = []
    for start in range(0, len(verse_index), 10):
        block, offset, size = struct.unpack_from("<IIH", verse_index, start)
        if size == 0:
            slots.append("")
            continue
        if block not in cache:
            block_offset, block_size, _ = blocks[block]
            cache = {block: zlib.decompress(compressed[block_offset : block_offset + block_size])}
        slots.append(cache[block][offset : offset + size].decode("utf-8"))
    return slots


def plain_text(markup: str) -> str:
    """OSIS markup to plain text: notes and titles dropped, other tags removed, spaces normalized."""
    text = DROPPED_ELEMENTS.sub(" ", markup)
    text = PILCROW.sub(" ", TAG.sub(" ", text))
    text = SPACE.sub(" ", text).strip()
    return SPACE_AFTER_OPENING.sub(r"\1", SPACE_BEFORE_PUNCTUATION.sub(r"\1", text))


def book_start(markup: str) -> str | None:
    """The OSIS book name when a slot opens a book (`<div type="book" osisID=... sID=...>`)."""
    for tag in DIV_TAG.findall(markup):
        if 'type="book"' in tag and START_ID.search(tag) and (match := OSIS_ID.search(tag)):
            return match.group(1)
    return None


def verse_references(slots: list[str]) -> dict[int, str]:
    """Slot number -> OSIS reference (Gen.1.1), read from the book and chapter markers in heading slots."""
    references: dict[int, str] = {}
    book, chapter, verse = None, 0, 0
    for slot, markup in enumerate(slots):
        chapter_match = CHAPTER_START.search(markup)
        if chapter_match:
            book, chapter, verse = chapter_match.group(1), int(chapter_match.group(2)), 0
        elif (name := book_start(markup)) is not None:
            book, chapter = name, 0
        elif book is not None and chapter > 0:
            verse += 1
            references[slot] = f"{book}.{chapter}.{verse}"
    return references


def read_module(folder: Path) -> dict[str, str]:
    """OSIS reference -> plain verse text (non-empty verses only), Old then New Testament."""
    verses: dict[str, str] = {}
    for testament in ("ot", "nt"):
        slots = read_slots(folder, testament)
        for slot, reference in verse_references(slots).items():
            text = plain_text(slots[slot])
            if text:
                verses[reference] = text
    return verses


def parallel_verses(source: dict[str, str], target: dict[str, str]) -> list[tuple[str, str, str]]:
    """(reference, source text, target text) for every verse both modules have, in canonical order."""
    return [(reference, text, target[reference]) for reference, text in source.items() if reference in target]

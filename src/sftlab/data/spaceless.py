"""Text written without spaces between words (Chinese, Japanese): where word boundaries come from.

Chinese NER is tagged per character, and Chinese text has no spaces, so for token classification:

- words (characters) are joined into the text with no space wherever a wide (CJK) character sits on either
  side of the boundary (`join_words`); elsewhere with one space, as before;
- raw text is cut into words at spaces, every wide character being a word of its own (`split_words`), so
  predictions on raw Chinese text are per character, like the training data;
- a SentencePiece tokenizer (XLM-R) marks every pre-split word as a word start: `▁` + `中` is two tokens,
  doubling the length of a Chinese sentence and showing the model a space that the text does not have.
  `word_start_marker` finds that lone marker token, which encoding then leaves out between joined words.
"""

from __future__ import annotations

import unicodedata
from typing import Any

HANGUL = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF))
"""Korean is wide but written with spaces between words."""


def is_wide(char: str) -> bool:
    """A character of a script written without spaces: East Asian Wide or Fullwidth, except Hangul."""
    if unicodedata.east_asian_width(char) not in ("W", "F"):
        return False
    code = ord(char)
    return not any(low <= code <= high for low, high in HANGUL)


def is_ambiguous_mark(char: str) -> bool:
    """Punctuation or a symbol of East Asian Ambiguous width (— … “ ” ‘ ’ ·): narrow in English text, but
    written without spaces in Chinese, where two of them often stand together (——, ……)."""
    return unicodedata.east_asian_width(char) == "A" and unicodedata.category(char)[0] in "PS"


def joins(previous: str, word: str) -> bool:
    """Whether `word` follows `previous` with no space between them in the written text: a wide character
    on either side, or two ambiguous-width marks (the `——` of `不抬——有`)."""
    if not previous or not word:
        return False
    before, after = previous[-1], word[0]
    return is_wide(before) or is_wide(after) or (is_ambiguous_mark(before) and is_ambiguous_mark(after))


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The text of `words` and each word's (start, end) character offsets in it."""
    parts, offsets, position = [], [], 0
    for index, word in enumerate(words):
        if index and not joins(words[index - 1], word):
            parts.append(" ")
            position += 1
        parts.append(word)
        offsets.append((position, position + len(word)))
        position += len(word)
    return "".join(parts), offsets


def split_words(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Word offsets from a pre-tokenizer's `spans` of `text`: whitespace trimmed (SentencePiece's spans
    include the space they replace), and every wide character split off as a word of its own."""
    words = []
    for start, end in spans:
        run = -1
        for position in range(start, end):
            char = text[position]
            if char.isspace() or is_wide(char):
                if run >= 0:
                    words.append((run, position))
                    run = -1
                if not char.isspace():
                    words.append((position, position + 1))
            elif run < 0:
                run = position
        if run >= 0:
            words.append((run, end))
    return words


def word_start_marker(tokenizer: Any) -> int | None:
    """The id of the lone word-start token a tokenizer puts before a pre-split CJK word (SentencePiece's
    `▁`), or None when it has none (BERT's WordPiece splits Chinese characters without one)."""
    ids = tokenizer(["中"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    if len(ids) == 2 and tokenizer.convert_ids_to_tokens(ids[0]).strip("▁ ") == "":
        return int(ids[0])
    return None

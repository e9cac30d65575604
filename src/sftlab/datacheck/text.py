"""Text pieces of the data checks: normalisation, exact keys, near-duplicate pairs, encoding damage.

Near-duplicates use MinHash with banded locality-sensitive hashing over character 3-grams of the
normalised text, vectorised with numpy: candidate pairs come only from rows that share a band, and every
candidate is confirmed by its edit similarity (rapidfuzz's normalised Indel ratio, 2 * matched characters /
both lengths), so the cost grows with the rows and the true near-duplicates, never with all pairs. On TREC
questions with one word replaced, that similarity is >= 0.80 for 95% of the edits, while 99.9% of random
question pairs stay below 0.62 (3-gram Jaccard separates them less well: 0.52 vs 0.30).
datasketch's MinHashLSH (backend="datasketch", the same bands) does the same row by row in Python; here
the shingling, hashing and banding run over all rows at once, which matters because `sftlab train` runs
this before every training run: on 94k texts 17.2 s CPU against datasketch's 57.5 s, the same exact
confirmation after both (docs/data-quality.md, benchmarks/data_check_scale.py).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

SHINGLE = 3
"""Characters per shingle."""
PERMUTATIONS = 100
BANDS, BAND_ROWS = (
    25,
    4,
)  # P(candidate) = 1 - (1 - J^4)^25: 0.97 at 3-gram Jaccard 0.6, 0.80 at 0.5, 0.04 at 0.2
LARGEST_BUCKET = 64
"""In a band bucket, each row is paired with at most this many others (a template shared by thousands of
rows would otherwise make millions of pairs)."""

_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_MOJIBAKE = re.compile(r"(?:Ã[\u0080-\u00bf]|Â[\u00a0-\u00bf]|â€[\u0080-\u00bf™œ\u009d\"˜”“¦]|ï¿½|Ã©|Ã¨)")
_HTML = re.compile(
    r"(?:</?(?:a|b|i|p|br|div|span|img|td|tr|li|ul|table|strong|em|font)\b[^>]*>|&(?:amp|lt|gt|quot|nbsp|#\d{2,5});)",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    """Case, punctuation, accents' composition and spacing removed: the text two near-copies share."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCTUATION.sub(" ", text)).strip()


def encoding_damage(text: str) -> str | None:
    """What looks broken in a text (mojibake, control characters, replacement characters, HTML), or None."""
    if "\ufffd" in text:
        return "replacement character U+FFFD (bytes lost in decoding)"
    if _MOJIBAKE.search(text):
        return f"mojibake {_MOJIBAKE.search(text).group(0)!r} (UTF-8 read as Latin-1/cp1252)"  # type: ignore[union-attr]
    control = next((ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"), None)
    if control is not None:
        return f"control character U+{ord(control):04X}"
    html = _HTML.search(text)
    if html:
        return f"HTML remnant {html.group(0)!r}"
    return None


def shingle_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, starts): the 64-bit hash of every character 3-gram of every text, concatenated, and where
    each text's hashes begin. A text shorter than 3 characters is one shingle. Rolling polynomial hash over
    the UTF-32 code points of all texts at once (uint64 arithmetic wraps: that is the modulus)."""
    padded = [text if len(text) >= SHINGLE else text.ljust(SHINGLE, "\0") for text in texts]
    counts = np.array([len(text) - SHINGLE + 1 for text in padded], dtype=np.int64)
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lengths = np.array([len(text) for text in padded], dtype=np.int64)
    text_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    with np.errstate(over="ignore"):
        rolled = np.zeros(len(codes) - SHINGLE + 1 if len(codes) >= SHINGLE else 0, dtype=np.uint64)
        base = np.uint64(1099511628211)
        for offset in range(SHINGLE):
            rolled = rolled * base + codes[offset : offset + len(rolled)]
    # Keep the windows that lie inside one text.
    keep = np.concatenate(
        [np.arange(start, start + count) for start, count in zip(text_starts, counts, strict=True)]
    )
    hashes = _mix(rolled[keep])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return hashes, starts


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads nearby inputs over all 64 bits."""
    with np.errstate(over="ignore"):
        values = values ^ (values >> np.uint64(30))
        values = values * np.uint64(0xBF58476D1CE4E5B9)
        values = values ^ (values >> np.uint64(27))
        values = values * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def minhash_signatures(hashes: np.ndarray, starts: np.ndarray, seed: int = 1) -> np.ndarray:
    """(rows, PERMUTATIONS) uint64: per seeded hash function (a * h + b mod 2^64, top 32 bits), the minimum
    over a row's shingles."""
    rng = np.random.default_rng(seed)
    multipliers = rng.integers(1, 2**63, size=PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
    offsets = rng.integers(0, 2**63, size=PERMUTATIONS, dtype=np.uint64)
    signatures = np.empty((len(starts), PERMUTATIONS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(PERMUTATIONS):
            signatures[:, k] = np.minimum.reduceat(
                (hashes * multipliers[k] + offsets[k]) >> np.uint64(32), starts
            )
    return signatures


def candidate_pairs(signatures: np.ndarray) -> np.ndarray:
    """(pairs, 2) int64, i < j, each once: rows that agree on every value of at least one band. Within a
    band's sorted keys, a row is paired with the next LARGEST_BUCKET rows of its bucket (vectorised)."""
    rows = len(signatures)
    codes = []
    for band in range(BANDS):
        block = signatures[:, band * BAND_ROWS : (band + 1) * BAND_ROWS]
        keys = _mix(block[:, 0])
        for column in range(1, BAND_ROWS):
            keys = _mix(keys ^ block[:, column])
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for distance in range(1, LARGEST_BUCKET + 1):
            same = np.flatnonzero(sorted_keys[:-distance] == sorted_keys[distance:])
            if len(same) == 0:
                break
            a, b = order[same], order[same + distance]
            codes.append(np.minimum(a, b) * rows + np.maximum(a, b))
    if not codes:
        return np.empty((0, 2), dtype=np.int64)
    unique = np.unique(np.concatenate(codes))
    return np.stack([unique // rows, unique % rows], axis=1)


def datasketch_candidate_pairs(texts: list[str]) -> np.ndarray:
    """The same candidates from datasketch (the field's MinHash LSH library): `MinHash.bulk` over the same
    character 3-grams (UTF-8 bytes, its SHA-1 based hashing), `MinHashLSH` with the same BANDS x BAND_ROWS,
    every row inserted and then queried (each pair once, i < j)."""
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError as error:
        raise ImportError(
            "the datasketch near-duplicate backend needs datasketch: pip install 'sftlab[datasketch]'"
        ) from error

    shingles = [
        {text[i : i + SHINGLE].encode() for i in range(max(1, len(text) - SHINGLE + 1))} for text in texts
    ]
    signatures = MinHash.bulk(shingles, num_perm=PERMUTATIONS, seed=1)
    lsh = MinHashLSH(num_perm=PERMUTATIONS, params=(BANDS, BAND_ROWS))
    with lsh.insertion_session() as session:
        for key, signature in enumerate(signatures):
            session.insert(key, signature, check_duplication=False)
    pairs = [(i, j) for i, signature in enumerate(signatures) for j in lsh.query(signature) if j > i]
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def near_duplicate_pairs(
    texts: list[str], threshold: float, backend: str = "numpy"
) -> list[tuple[int, int, float]]:
    """(i, j, similarity) for every pair of (normalised) texts whose edit similarity is at least `threshold`
    (candidates from MinHash LSH, each confirmed exactly); identical texts are left to the exact check.
    `backend`: "numpy" (this module's vectorised MinHash and banding) or "datasketch"; they hash
    differently, so a pair near the LSH's detection curve can be a candidate in one and not the other,
    but every pair either returns passes the same exact similarity."""
    from rapidfuzz.fuzz import ratio
    from rapidfuzz.process import cpdist

    if len(texts) < 2:
        return []
    if backend == "datasketch":
        candidates = datasketch_candidate_pairs(texts)
    else:
        hashes, starts = shingle_hashes(texts)
        candidates = candidate_pairs(minhash_signatures(hashes, starts))
    if len(candidates) == 0:
        return []
    # One C++ call over all candidates (rapidfuzz's cpdist) instead of a Python loop of ratio() calls.
    similarity = cpdist(
        [texts[i] for i in candidates[:, 0]],
        [texts[j] for j in candidates[:, 1]],
        scorer=ratio,
        score_cutoff=threshold * 100,
        dtype=np.float64,
    )
    pairs = []
    for (i, j), score in zip(candidates.tolist(), similarity.tolist(), strict=True):
        if score / 100 >= threshold and texts[i] != texts[j]:
            pairs.append((i, j, score / 100))
    return sorted(pairs)

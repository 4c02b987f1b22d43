"""Topical relevance between paired items, from labels or from human captions, never from the embeddings.

The universal protocol (:func:`~simstd.evaluation.tasks.universal_task`)
needs to know which *other* pairs are relevant to a query, in either modality.
Two sources, both independent of the embeddings being evaluated:

* :func:`label_relevance` - items with the same label (e.g. the synthetic
  generator's subtopic) are relevant;
* :func:`caption_relevance` - COCO-style reference captions (five per image).
  The *content words* of an image are the words that at least
  ``min_captions`` (default 3) of its captions use, after lower-casing, a
  crude plural-to-singular rule (``benches`` -> ``bench``, ``puppies`` ->
  ``puppy``, ``cats`` -> ``cat``), and dropping :data:`STOPWORDS` (function
  words, numbers, colours, sizes, generic people words) and words ending in
  ``-ing``/``-ed`` (mostly verbs: *sitting*, *parked*). Two images are relevant
  when they share a content word: *"a black honda motorcycle parked in front
  of a garage"* and *"a motorcycle on a dirt road"* share *motorcycle*. The
  consensus of three annotators keeps one annotator's aside out; the people
  words are dropped because *man*/*people* would otherwise make every photo
  with a person relevant to every other. A pair's caption embedding inherits
  its image's relevance (the caption describes that image).

On the 500 CLIP COCO rows this gives a median of 27 relevant items among the
other 499 images (and as many captions); 38 images have no content word shared
with another image and are not used as queries.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import SimstdError

#: Words that never make two images relevant: function words, numbers, colours, sizes, people.
STOPWORDS = frozenset("""
a an the and or but of in on at to with without from by for into onto over under near next beside behind
front top bottom is are was were be been being it its this that these those there here their his her he
she they them some several many few one two three four five six seven eight nine ten very up down out off
while as has have who which what where other another each together side back along around across through
against during about between above below inside outside
white black red blue green yellow brown orange pink purple gray grey silver gold dark light colorful
small large big little old young tall long short
man men woman women people person boy girl child children kid kids lady guy group couple
""".split())
#: A content word must be used by at least this many of an image's captions.
MIN_CAPTIONS = 3


def singular(word: str) -> str:
    """A crude English plural -> singular (no dictionary): enough to match *cats* with *cat*."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and re.search(r"(ses|xes|ches|shes)$", word):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not re.search(r"(ss|us|is)$", word):
        return word[:-1]
    return word


def content_words(captions: Sequence[str], min_captions: int = MIN_CAPTIONS) -> set[str]:
    """Words used by at least ``min_captions`` of the captions (see the module docstring)."""
    counts: dict[str, int] = {}
    for caption in captions:
        words = {singular(w) for w in re.findall(r"[a-z]+", str(caption).lower())
                 if w not in STOPWORDS and not re.search(r"(ing|ed)$", w)}
        for w in words - STOPWORDS:
            counts[w] = counts.get(w, 0) + 1
    return {w for w, n in counts.items() if n >= min_captions}


def caption_relevance(captions: Sequence[Sequence[str]], min_captions: int = MIN_CAPTIONS) -> np.ndarray:
    """``(N, N)`` bool: rows ``i`` and ``j`` (``i != j``) share a content word. Diagonal False."""
    sets = [content_words(c, min_captions) for c in captions]
    vocab = {w: i for i, w in enumerate(sorted(set().union(*sets)))}
    B = np.zeros((len(sets), max(len(vocab), 1)), dtype=np.float64)
    for i, words in enumerate(sets):
        B[i, [vocab[w] for w in words]] = 1.0
    rel = (B @ B.T) > 0
    np.fill_diagonal(rel, False)
    return rel


def label_relevance(labels: Sequence) -> np.ndarray:
    """``(N, N)`` bool: rows with equal labels (``i != j``) are relevant. Diagonal False."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise SimstdError(f"relevance labels must be one label per pair (a 1-D array), got shape {labels.shape}")
    rel = labels[:, None] == labels[None, :]
    np.fill_diagonal(rel, False)
    return rel


def load_relevance(path: str | Path, n: int) -> np.ndarray:
    """Relevance between ``n`` pairs from a file: caption metadata (``.json``) or labels (``.npy``).

    ``.json``: a list of ``n`` objects, each with ``all_captions`` (the
    reference captions of the pair's image, as in
    ``features_clip_coco_val2017_meta.json``). ``.npy``: ``n`` labels, one per
    pair (pairs with equal labels are relevant).
    """
    path = Path(path)
    if not path.exists():
        raise SimstdError(f"relevance file {path} does not exist; check the path")
    if path.suffix == ".npy":
        labels = np.load(path, allow_pickle=False)
        if labels.shape != (n,):
            raise SimstdError(f"{path}: expected {n} labels (one per pair), got shape {labels.shape}")
        return label_relevance(labels)
    if path.suffix != ".json":
        raise SimstdError(f"{path}: relevance comes from caption metadata (.json) or labels (.npy)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimstdError(f"{path}: not readable JSON ({exc})") from None
    ok = isinstance(meta, list) and all(isinstance(r, dict) and isinstance(r.get("all_captions"), list)
                                        for r in meta)
    if not ok:
        raise SimstdError(f"{path}: expected a list of objects with 'all_captions' (the reference captions of "
                          "each pair), one per pair")
    if len(meta) != n:
        raise SimstdError(f"{path}: {len(meta)} rows of captions for {n} pairs; they must match row by row")
    return caption_relevance([r["all_captions"] for r in meta])


def find_caption_metadata(pairs_path: str | Path) -> Path | None:
    """Caption metadata shipped beside a feature file as ``<stem>_*meta.json`` (with ``all_captions``)."""
    pairs_path = Path(pairs_path)
    for candidate in sorted(pairs_path.parent.glob(f"{pairs_path.stem}_*meta.json")):
        try:
            meta = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(meta, list) and meta and isinstance(meta[0], dict) and "all_captions" in meta[0]:
            return candidate
    return None

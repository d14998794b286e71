"""Document channels (extension): each record is one document, ``{"document": [s1, s2, ...]}``, its
sentences as text or as lists of token ids; the job draws (sentence, rest-of-document) pairs from it.

Why: a retrieval model learns sentence -> document from such pairs, and writing them into the file
fixes them for every epoch (the launch notes' preprocessing, 5 pairs per document). Drawn here, a
training channel gives fresh pairs each epoch (:meth:`DocumentData.pairs`, seeded by ``(seed,
epoch)``: every rank draws the same ones), StarSpace's document mode. Validation and test channels of
documents give one fixed pair per document and one negative per pair (:func:`fixed_pairs`).

Sentences are kept flat per side (:class:`~object2vec.data.records.Side`) with each document's first
sentence in ``starts``; a draw picks sentences and gathers the pairs' tokens with numpy only.

    {"document": ["The vote was close.", "The bill passed by 4 votes.", "It goes to the Lords next."]}
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from object2vec.data.records import (
    DOCUMENT_KEY,
    RECORD_WORDING,
    PairData,
    RecordRules,
    Side,
    TextTokens,
    channel_files,
    numbered_lines,
    parse_line,
    show_value,
)
from object2vec.errors import UserError
from object2vec.sequences import FlatIds, sequence_problem

MIN_SENTENCES = 2  # a sentence and a non-empty rest


@dataclass
class DocumentData:
    """A document channel: ``sentences[s]`` is side ``s``'s tokens of every sentence (one object when
    both sides read the same tokens), document ``d`` is sentences ``starts[d]:starts[d + 1]``."""

    sentences: tuple[Side, Side]
    starts: np.ndarray  # (D + 1,) int64
    max_seq_lens: tuple[int, int]

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def num_sentences(self) -> int:
        return int(self.starts[-1])

    def pairs(self, rng: np.random.Generator, per_document: int) -> PairData:
        """``per_document`` distinct sentences of each document (all of a shorter one), each as
        ``in0`` with the document's other sentences, in order, as ``in1``; label 1. Sides are cut to
        their ``max_seq_len``."""
        counts = np.diff(self.starts)  # (D,)
        doc_of = np.repeat(np.arange(len(self), dtype=np.int64), counts)  # (S,)
        order = np.lexsort((rng.random(self.num_sentences), doc_of))  # by document, shuffled within
        rank = np.arange(self.num_sentences) - np.repeat(self.starts[:-1], counts)  # within its document
        picked = order[rank < per_document]  # (P,) sentence ids, document after document
        in0 = _cut(self.sentences[0], picked, self.max_seq_lens[0])
        in1 = _rest(self.sentences[1], self.starts, doc_of[picked], picked, self.max_seq_lens[1])
        return PairData(in0, in1, np.ones(len(picked), dtype=np.int64))


    def pair_counts(self, per_document: int) -> np.ndarray:
        """``(D,)``: how many pairs :meth:`pairs` draws from each document (they come document
        after document)."""
        return np.minimum(np.diff(self.starts), per_document)

    def whole(self, side: int) -> Side:
        """Every document's tokens on ``side``, all its sentences in order, cut to the side's
        ``max_seq_len``: what ``hard_negatives`` embeds to find each document's neighbours."""
        tokens = self.sentences[side]
        return _span(tokens, tokens.offsets[self.starts[:-1]], tokens.offsets[self.starts[1:]],
                     self.max_seq_lens[side])


def _span(side: Side, starts: np.ndarray, ends: np.ndarray, max_len: int) -> Side:
    """The tokens ``side.ids[starts[i]:ends[i]]`` of each ``i``, cut to ``max_len``."""
    lengths = np.minimum(ends - starts, max_len)  # (P,)
    positions = np.arange(lengths.sum()) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return Side.from_lengths(side.ids[positions], lengths)


def _cut(side: Side, idx: np.ndarray, max_len: int) -> Side:
    """Sentences ``idx`` of ``side``, each cut to ``max_len`` tokens."""
    return _span(side, side.offsets[idx], side.offsets[idx + 1], max_len)


def _rest(side: Side, starts: np.ndarray, doc: np.ndarray, skip: np.ndarray, max_len: int) -> Side:
    """For each pair, document ``doc``'s tokens without sentence ``skip``'s, cut to ``max_len``."""
    begin, end = side.offsets[starts[doc]], side.offsets[starts[doc + 1]]  # (P,) the document's tokens
    hole, hole_len = side.offsets[skip] - begin, side.offsets[skip + 1] - side.offsets[skip]
    lengths = np.minimum(end - begin - hole_len, max_len)  # (P,) >= 1: every sentence has a token
    p = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position in its pair
    positions = np.repeat(begin, lengths) + p + (p >= np.repeat(hole, lengths)) * np.repeat(hole_len, lengths)
    return Side.from_lengths(side.ids[positions], lengths)


def fixed_pairs(docs: DocumentData, channel: str) -> PairData:
    """What a validation or test channel of documents gives, the same in every epoch and job: one
    pair per document (label 1) and one negative per pair, its ``in0`` with another pair's ``in1``
    (label 0), so that the loss and accuracy measure telling the two apart."""
    rng = np.random.default_rng([zlib.crc32(channel.encode())])
    pairs = docs.pairs(rng, 1)
    n = len(pairs)
    if n < 2:
        return pairs
    order = rng.permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[order] = np.roll(order, -1)  # a cycle through all pairs: never the pair itself
    idx0, idx1 = np.tile(np.arange(n), 2), np.concatenate([np.arange(n), partner])
    return PairData(_cut(pairs.in0, idx0, np.iinfo(np.int32).max),
                    _cut(pairs.in1, idx1, np.iinfo(np.int32).max),
                    np.repeat(np.array([1, 0], dtype=np.int64), n))


def is_document_channel(channel_dir: Path) -> bool:
    """Whether the channel's first readable record is a JSON object with ``document``."""
    for path in channel_files(channel_dir):
        for _, line in numbered_lines(path):
            try:
                rec = parse_line("", line)
            except UserError:  # not JSON: loading the channel as pairs reports it
                return False
            return isinstance(rec, dict) and DOCUMENT_KEY in rec
    return False


def load_documents(channel_dir: Path, rules: RecordRules) -> DocumentData:
    """Read and validate every file of a document channel.

    Raises:
        UserError: no documents, or a bad record (the message names file, line and sentence).
    """
    if rules.regression:
        raise UserError(f"channel {channel_dir.name!r} holds documents, whose pairs are labelled 1 (and "
                        f"their negatives 0): it needs output_layer=softmax")
    shared = rules.text[0] is rules.text[1]
    # A sentence feeds either side, so it must fit both: ids below both vocabularies, cut at the
    # longer length (each side's pairs cut again to its own).
    longest = max(rules.max_seq_lens)
    flat = FlatIds("i")  # id documents
    texts = [TextTokens(rules.text[side], longest if shared else rules.max_seq_lens[side],  # per side
                        "has no token; each sentence needs at least one")
             for side in ((0,) if shared else (0, 1))] if rules.text[0] is not None else []
    counts = []
    first = ""
    for path in channel_files(channel_dir):
        for number, line in numbered_lines(path):
            where = f"{path}, line {number}"
            first = first or where
            document = _document(parse_line(where, line), where, first)
            for j, sentence in enumerate(document):
                if not texts:
                    _append_ids(flat, sentence, _sentence(where, j), rules, first)
                elif type(sentence) is str:
                    place = _sentence(where, j)
                    for tokens in texts:
                        tokens.add(place, sentence)
                else:
                    raise UserError(f"{_sentence(where, j)} holds {show_value(sentence)}, but this "
                                    f"job's documents are text (as in {rules.text_origin or first})")
            counts.append(len(document))
    if not counts:
        raise UserError(f"channel {channel_dir.name!r} has no records in {channel_dir}")
    made = [tokens.side() for tokens in texts] or [Side.from_lengths(*flat.arrays())]
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return DocumentData((made[0], made[-1]), starts, rules.max_seq_lens)


def _sentence(where: str, j: int) -> str:
    """How a message names sentence ``j`` of the record at ``where``."""
    return f"{where}: sentence {j} of 'document'"


def _document(rec: object, where: str, first: str) -> list:
    """The record's sentences, checked for shape."""
    if not isinstance(rec, dict) or DOCUMENT_KEY not in rec:
        pair_keys = [k for k in ("in0", "in1", "label") if isinstance(rec, dict) and k in rec]
        got = (f"a record of {', '.join(pair_keys)}" if pair_keys else
               "an object without it" if isinstance(rec, dict) else type(rec).__name__)
        raise UserError(f"{where}: each line of this channel must be a JSON object with 'document' (a "
                        f"list of sentences), as in {first}; got {got} (a channel holds documents or "
                        f"pairs, not both)")
    document = rec[DOCUMENT_KEY]
    if type(document) is not list or len(document) < MIN_SENTENCES:
        raise UserError(f"{where}: 'document' must be a list of at least {MIN_SENTENCES} sentences (one "
                        f"sentence and the rest make a pair), got {show_value(document, 80)}")
    return document


def _append_ids(flat: FlatIds, sentence: object, where: str, rules: RecordRules, first: str) -> None:
    """Append one sentence of ids, cut to the longer side, after checking it fits both sides."""
    vocab, longest = min(rules.vocab_sizes), max(rules.max_seq_lens)
    problem = sequence_problem(DOCUMENT_KEY, sentence, longest, vocab)
    if problem is not None:
        text = problem.message(RECORD_WORDING)
        if isinstance(sentence, str):
            text += f"; this job's documents are token ids (as in {rules.text_origin or first})"
        raise UserError(f"{text} ({where})" if problem.place_last else f"{where}: {text}")
    flat.append(sentence[:longest])

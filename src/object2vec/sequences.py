"""Token-id sequences: the one rule for a side's value and the one conversion to flat arrays, shared
by the training data (:mod:`object2vec.data.records`), the inference requests
(:mod:`object2vec.serving.predictor`) and the model's batches (:class:`object2vec.model.tokens.Tokens`).

The rule: a side (``"in0"`` or ``"in1"``) holds a non-empty JSON array of integer token ids (not
booleans), each in ``0 .. vocab_size - 1``. Ids past the side's truncation length are neither used
nor checked. Training data and requests word a problem each their own way (:class:`Wording`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NOT_A_LIST, NOT_AN_INTEGER, NEGATIVE, OUT_OF_VOCAB = (
    "not a list", "not an integer", "negative", "out of vocabulary")


@dataclass(frozen=True)
class Wording:
    """How one caller words a :class:`SequenceProblem`."""

    quote: str  # around the side's name: ' (training data) or " (requests)
    show_value: Callable[[Any], str]  # a side's value that is not a list, or a token that is no id
    show_id: Callable[[Any], str]  # an integer id (negative or beyond the vocabulary)
    separator: str = ","  # between "holds <token>" and "token ids must be integers"
    name_booleans: bool = False  # "token ids must be integers, not booleans" for true and false
    show_list: Callable[[Any], str] | None = None  # a side's value (default: show_value)


@dataclass(frozen=True)
class SequenceProblem:
    """What is wrong with one side: ``kind`` (one of the constants above), the side's key, the
    offending value (the side's value for NOT_A_LIST, else the token) and the side's vocabulary."""

    kind: str
    key: str
    value: Any
    vocab_size: int = 0

    @property
    def place_last(self) -> bool:
        """Whether the message names its place at the end (SageMaker's vocabulary message opens
        with its own words) rather than at the start."""
        return self.kind == OUT_OF_VOCAB

    def message(self, wording: Wording) -> str:
        """The problem in ``wording``, without its place (file and line, or instance)."""
        key = f"{wording.quote}{self.key}{wording.quote}"
        if self.kind == NOT_A_LIST:
            show = wording.show_list or wording.show_value
            return f"{key} must be a non-empty list of integer token ids, got {show(self.value)}"
        if self.kind == NOT_AN_INTEGER:
            rule = ("integers, not booleans" if wording.name_booleans and type(self.value) is bool
                    else "integers")
            return (f"{key} holds {wording.show_value(self.value)}{wording.separator} token ids "
                    f"must be {rule}")
        if self.kind == NEGATIVE:
            return f"{key} holds negative token id {wording.show_id(self.value)}"
        return (f"Inconsistent vocab for {self.key} found. Vocab id \"{wording.show_id(self.value)}\" "
                f"is not less than vocab_size={self.vocab_size}")


def shape_problem(key: str, value: Any) -> SequenceProblem | None:
    """The problem with a side's value that is not a non-empty list, or None."""
    if type(value) is not list or not value:
        return SequenceProblem(NOT_A_LIST, key, value)
    return None


def id_problem(key: str, ids: Sequence[Any], vocab_size: int) -> SequenceProblem | None:
    """The first id of ``ids`` (already cut to the side's length) that breaks the rule, or None."""
    for tok in ids:
        if type(tok) is not int:  # bool is a subclass of int, not int
            return SequenceProblem(NOT_AN_INTEGER, key, tok, vocab_size)
        if tok < 0:
            return SequenceProblem(NEGATIVE, key, tok, vocab_size)
        if tok >= vocab_size:
            return SequenceProblem(OUT_OF_VOCAB, key, tok, vocab_size)
    return None


def sequence_problem(key: str, value: Any, max_len: int, vocab_size: int) -> SequenceProblem | None:
    """The problem with one side's value, truncated to ``max_len`` ids, or None."""
    return shape_problem(key, value) or id_problem(key, value[:max_len], vocab_size)


class FlatIds:
    """Sequences of ids appended one at a time to flat arrays, at C speed: the one conversion from
    lists of ids to the flat form (``ids`` + ``lengths``) that training data, requests and the
    model's batches share. Appending each sequence as it is read keeps it in the CPU cache: in the
    training loader, collecting a chunk's lists first and converting them together was slower.

    Args:
        typecode: the ids' type, as :mod:`array` names it: ``"q"`` int64, ``"i"`` int32.
    """

    def __init__(self, typecode: str = "q") -> None:
        self.ids = array(typecode)
        self.lengths = array("q")

    def append(self, seq: Sequence[int]) -> None:
        """Append one sequence.

        Raises:
            TypeError: an id is not an integer (a float, string, null, list...).
            OverflowError: an id does not fit the type.

        Booleans pass as 0 and 1: callers that read JSON check for them.
        """
        self.ids.extend(seq)
        self.lengths.append(len(seq))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (N,), lengths (B,) int64)``: sequence ``i`` is ``ids[begin : begin + lengths[i]]``
        with ``begin = lengths[:i].sum()``. Views of this object's buffers, not copies."""
        return (np.frombuffer(self.ids, dtype=np.dtype(self.ids.typecode)),
                np.frombuffer(self.lengths, dtype=np.int64))


def flat_ids(seqs: Iterable[Sequence[int]], typecode: str = "q") -> tuple[np.ndarray, np.ndarray]:
    """Sequences of ids -> ``(ids (N,), lengths (B,) int64)`` (:class:`FlatIds`; same errors)."""
    flat = FlatIds(typecode)
    for seq in seqs:
        flat.append(seq)
    return flat.arrays()

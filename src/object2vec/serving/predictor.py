"""Decoded instances -> predictions, with the model loaded once per worker. No HTTP here.

Mode per instance (object2vec.md section 5.1): ``in0`` and ``in1`` -> ``{"scores": [...]}`` (class
probabilities, or one value for regression); only ``in0`` -> ``{"embeddings": [...]}`` from enc0;
only ``in1`` -> embeddings from enc1. A side the model reads as text takes a string (tokenized with
the model's tokenizer, all of a request's strings of a side in one batch) or, as always, a list of
ids. One request may mix modes: the instances are grouped by mode and each group runs batched. The
answer is one :class:`Predictions` per group -- a float32 matrix and the request positions of its
rows -- which the codec writes in request order. Other keys (``label``...) are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch

from object2vec.artifact import LoadedModel, load_artifact
from object2vec.errors import UserError
from object2vec.model.tokens import Tokens
from object2vec.sequences import SequenceProblem, Wording, flat_ids, id_problem, shape_problem
from object2vec.text import UnencodableText

SIDES = ("in0", "in1")
SCORES, EMBEDDINGS, NEIGHBORS = "scores", "embeddings", "neighbors"
TOP_K, RERANK = "top_k", "rerank"
MAX_TOP_K = 1000  # neighbours one instance may ask for
RERANK_CANDIDATES = 100  # rerank: at least this many nearest items (and 10 x top_k) scored by the model
BATCH_SIZE = 1024  # instances per forward pass


class InvalidInstance(UserError):
    """An instance the model cannot take (400); ``index`` is its 0-based position in the request."""

    def __init__(self, index: int, problem: str, where: Callable[[int], str] | None = None,
                 where_last: bool = False) -> None:
        self.index, self.problem = index, problem
        place = (where or _where)(index)
        super().__init__(f"{problem} ({place})" if where_last else f"{place}: {problem}")

    @classmethod
    def of_sequence(cls, index: int, problem: SequenceProblem,
                    where: Callable[[int], str] | None = None) -> InvalidInstance:
        """The error for a broken token-id rule (:mod:`object2vec.sequences`)."""
        return cls(index, problem.message(_WORDING), where, where_last=problem.place_last)


def _where(index: int) -> str:
    return f"instance {index}"


@dataclass(frozen=True)
class Predictions:
    """The answers of one mode: row ``i`` of ``matrix`` answers the instance at request position
    ``positions[i]``."""

    key: str  # SCORES, EMBEDDINGS or NEIGHBORS
    positions: np.ndarray  # (n,) int64, ascending
    matrix: np.ndarray  # (n, C) scores or (n, enc_dim) embeddings, float32, C-contiguous
    objects: list[Any] | None = None  # NEIGHBORS: per row, [{"id": ..., "score": ...}, ...] best first


def by_instance(groups: Sequence[Predictions]) -> list[dict[str, np.ndarray]]:
    """``[{key: row}, ...]`` in request order (tests and tools; the codec writes groups directly)."""
    out: list[dict[str, np.ndarray] | None] = [None] * sum(len(g.positions) for g in groups)
    for group in groups:
        rows = group.objects if group.objects is not None else group.matrix
        for position, row in zip(group.positions.tolist(), rows):
            out[position] = {group.key: row}
    return out  # type: ignore[return-value]  # every position is filled by its group


@dataclass
class _Text:
    """A side's text waiting for its tokens: they go to ``seqs[row]``."""

    seqs: list[list[int]]
    row: int
    position: int  # the instance's index in the request
    text: str


@dataclass
class _Group:
    """Instances of one mode: their request positions and, per side used, their truncated ids
    (as lists, then flat once checked)."""

    sides: tuple[int, ...]  # (0, 1) for scores, (0,) or (1,) for embeddings and neighbours
    positions: list[int]
    seqs: tuple[list[list[int]], ...]  # one list of sequences per entry of ``sides``
    flat: list[tuple[np.ndarray, np.ndarray]] | None = None  # (ids, lengths) per entry of ``sides``
    top_k: list[int] | None = None  # neighbours: each instance's k
    rerank: list[bool] | None = None  # neighbours: whether the pair model orders them


class Predictor:
    """Holds one loaded model and answers :meth:`predict`.

    Args:
        loaded: the model from :func:`object2vec.artifact.load_artifact` (in eval mode).
        device: where the model lives; inputs are moved there.
        batch_size: instances per forward pass.
    """

    def __init__(self, loaded: LoadedModel, device: torch.device | str = "cpu",
                 batch_size: int = BATCH_SIZE) -> None:
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.text = loaded.text
        self.catalog = loaded.catalog
        config = self.model.config
        self.vocab_sizes = (config.encoder(0).vocab_size, config.encoder(1).vocab_size)
        self.max_seq_lens = (config.encoder(0).max_seq_len, config.encoder(1).max_seq_len)

    @classmethod
    def from_model_dir(cls, model_dir: Path, device: torch.device | str = "cpu") -> Predictor:
        """Load the artifact in ``model_dir``.

        Raises:
            UserError: no readable Object2Vec model there.
        """
        return cls(load_artifact(model_dir, device=device), device=device)

    def predict(self, instances: Sequence[Any], max_seqlens: tuple[int, int] | None = None,
                where: Callable[[int], str] | None = None) -> list[Predictions]:
        """The predictions, one :class:`Predictions` per mode present: ``"scores"`` rows ``(C,)``
        (class probabilities, or one value for regression) or ``"embeddings"`` rows ``(enc_dim,)``.

        Args:
            instances: decoded JSON values, each ``{"in0": [ids], "in1": [ids]}`` or one of the two.
            max_seqlens: truncate enc0 / enc1 inputs to these lengths (default: the training
                ``encN_max_seq_len``). Ids past the cut are neither used nor checked, as in
                training.
            where: names an instance in error messages (default ``"instance <index>"``).

        Raises:
            InvalidInstance: the first invalid instance, with its index and the problem.
        """
        groups, text_problem = self._group(instances, max_seqlens or self.max_seq_lens, where)
        self._check_ids(groups, where, text_problem)
        results = []
        with torch.inference_mode():
            for group in groups.values():
                outputs = list(self._run(group))  # (b, C) or (b, enc_dim) per batch
                matrix = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
                positions = np.array(group.positions, dtype=np.int64)
                if group.top_k is not None:
                    results.append(self._neighbors(group, positions, matrix))
                    continue
                results.append(Predictions(SCORES if len(group.sides) == 2 else EMBEDDINGS, positions,
                                           np.ascontiguousarray(matrix, dtype=np.float32)))
        return results

    def _neighbors(self, group: _Group, positions: np.ndarray, queries: np.ndarray) -> Predictions:
        """The catalog's best items for each query embedding, each cut to its instance's k; with
        ``rerank``, the nearest candidates ordered by the pair model's score instead."""
        catalog = self.catalog
        assert catalog is not None and group.top_k is not None and group.rerank is not None
        wanted = [max(RERANK_CANDIDATES, 10 * k) if rerank else k
                  for k, rerank in zip(group.top_k, group.rerank)]
        scores, rows = catalog.search_rows(queries, max(wanted))
        assert group.flat is not None
        ids, lengths = group.flat[0]
        begins = np.cumsum(lengths) - lengths
        objects = []
        for i, (k, rerank) in enumerate(zip(group.top_k, group.rerank)):
            found = rows[i][: wanted[i]]
            found = found[found >= 0]
            if rerank:
                query = ids[begins[i]: begins[i] + lengths[i]]
                objects.append(self._rerank(group.sides[0], query, found, k))
            else:
                objects.append([{"id": catalog.ids[r], "score": s}
                                for r, s in zip(found[:k].tolist(), scores[i][:k].tolist())])
        return Predictions(NEIGHBORS, positions, np.zeros((len(positions), 0), np.float32), objects)

    def _rerank(self, side: int, query: np.ndarray, rows: np.ndarray, k: int) -> list[dict[str, Any]]:
        """The ``k`` of the catalog's ``rows`` that the pair model scores highest with ``query``
        (on ``side``; the items on the other): the regression value, or the expected class
        ``sum_c c * p_c`` (P(label 1) for two classes)."""
        catalog = self.catalog
        assert catalog is not None
        items = catalog.item_tokens(rows)
        queries = [query] * len(items)
        in0, in1 = (queries, items) if side == 0 else (items, queries)
        out = np.concatenate([
            self.model.scores(_tokens(in0[b: b + self.batch_size]).to(self.device),
                              _tokens(in1[b: b + self.batch_size]).to(self.device)).float().cpu().numpy()
            for b in range(0, len(items), self.batch_size)])  # (C, classes) or (C, 1)
        regression = self.loaded.hyperparameters.is_regression
        score = out[:, 0] if regression else out @ np.arange(out.shape[1], dtype=np.float32)
        order = np.argsort(-score, kind="stable")[:k]
        return [{"id": catalog.ids[int(rows[o])], "score": float(score[o])} for o in order]

    # -- validation ------------------------------------------------------------------------------

    def _group(self, instances: Sequence[Any], limits: tuple[int, int],
               where: Callable[[int], str] | None
               ) -> tuple[dict[tuple[Any, ...], _Group], InvalidInstance | None]:
        """Sort instances into modes, check their structure, tokenize their text and truncate their
        sequences; also returns the first text without tokens, if any."""
        groups: dict[tuple[Any, ...], _Group] = {}
        texts: tuple[list[_Text], list[_Text]] = ([], [])
        for index, instance in enumerate(instances):
            problem = _structure_problem(instance, self.text) or self._top_k_problem(instance)
            if problem is not None:
                self._check_ids(groups, where, self._tokenize(texts, limits, where))  # earlier ones
                raise InvalidInstance(index, problem, where)
            sides = tuple(s for s in (0, 1) if SIDES[s] in instance)
            key = sides + ((TOP_K,) if TOP_K in instance else ())
            group = groups.get(key)
            if group is None:
                neighbours = TOP_K in instance
                group = groups[key] = _Group(sides, [], tuple([] for _ in sides),
                                             top_k=[] if neighbours else None,
                                             rerank=[] if neighbours else None)
            group.positions.append(index)
            if group.top_k is not None:
                group.top_k.append(instance[TOP_K])
                group.rerank.append(instance.get(RERANK, False))
            for slot, side in enumerate(sides):
                value, seqs = instance[SIDES[side]], group.seqs[slot]
                if isinstance(value, str):
                    texts[side].append(_Text(seqs, len(seqs), index, value))
                    seqs.append([0])  # replaced by its tokens
                else:
                    seqs.append(value[: limits[side]])
        return groups, self._tokenize(texts, limits, where)

    def _top_k_problem(self, instance: dict) -> str | None:
        """What is wrong with an instance's ``top_k``, or None (also when it has none)."""
        if TOP_K not in instance:
            return None
        k = instance[TOP_K]
        if self.catalog is None:
            return ('"top_k" asks for neighbours from the catalog, but this model was trained without '
                    'a catalog channel')
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
            return f'"top_k" must be an integer from 1 to {MAX_TOP_K}, got {_show(k)}'
        if sum(side in instance for side in SIDES) != 1:
            return '"top_k" needs exactly one of "in0" and "in1": the query'
        rerank = instance.get(RERANK, False)
        if not isinstance(rerank, bool):
            return f'"rerank" must be true or false, got {_show(rerank)}'
        if rerank and self.catalog.tokens is None:
            return '"rerank" needs a model whose catalog keeps its items\' tokens'
        if rerank and SIDES[self.catalog.side] in instance:
            return (f'"rerank" scores the query with each candidate item, so the query must be the '
                    f'other side than the catalog\'s items ("{SIDES[1 - self.catalog.side]}")')
        return None

    def _tokenize(self, texts: tuple[list[_Text], list[_Text]], limits: tuple[int, int],
                  where: Callable[[int], str] | None) -> InvalidInstance | None:
        """Put each text's tokens in its place, one tokenizer batch per side; the first text without
        a single token is returned as the problem (the others are still filled in)."""
        first: InvalidInstance | None = None
        for side, pending in enumerate(texts):
            if not pending:
                continue
            encoder = self.text[side]
            assert encoder is not None, "_structure_problem refuses text for a side of ids"
            try:
                ids, lengths = encoder.encode([t.text for t in pending], limits[side])
            except UnencodableText as exc:
                bad = pending[exc.index]
                if first is None or bad.position < first.index:
                    first = InvalidInstance(bad.position, f'"{SIDES[side]}" {exc}', where)
                continue
            for text, seq in zip(pending, np.split(ids, np.cumsum(lengths)[:-1])):
                if seq.size:
                    text.seqs[text.row] = seq.tolist()
                elif first is None or text.position < first.index:
                    what = ("empty text" if not text.text.strip()
                            else f"text without a single token ({_show(text.text)})")
                    first = InvalidInstance(text.position, f'"{SIDES[side]}" is {what}; each side '
                                                           f'needs at least one token', where)
            texts[side].clear()
        return first

    def _check_ids(self, groups: dict[tuple[int, ...], _Group],
                   where: Callable[[int], str] | None, first: InvalidInstance | None = None) -> None:
        """Check and convert every id of each side of each group at once (C-speed builtins and
        numpy); if any is bad, walk the instances to raise for the first one in request order
        (``first``: a problem found before, raised unless an earlier instance has one)."""
        for group in groups.values():
            if group.flat is not None:  # checked already
                continue
            flat = []
            for slot, side in enumerate(group.sides):
                seqs = group.seqs[slot]
                ids = None
                if set(map(type, chain.from_iterable(seqs))) == {int}:  # no bool, float, str...
                    try:
                        ids, lengths = flat_ids(seqs)
                    except OverflowError:  # beyond int64: out of any vocabulary
                        pass
                if ids is not None and ids.min() >= 0 and ids.max() < self.vocab_sizes[side]:
                    flat.append((ids, lengths))
                    continue
                for position, seq in zip(group.positions, seqs):
                    problem = id_problem(SIDES[side], seq, self.vocab_sizes[side])
                    if problem is not None:
                        if first is None or position < first.index:
                            first = InvalidInstance.of_sequence(position, problem, where)
                        break
            group.flat = flat
        if first is not None:
            raise first

    # -- inference -------------------------------------------------------------------------------

    def _run(self, group: _Group) -> Iterator[np.ndarray]:
        """Yield the outputs of each batch of ``group``, in order: ``(b, C)`` probabilities (or
        ``(b, 1)`` values) for pairs, ``(b, enc_dim)`` embeddings for one side; float32 numpy."""
        assert group.flat is not None, "_check_ids converts every group first"
        begins = [np.cumsum(lengths) - lengths for _, lengths in group.flat]
        longest = max(int(lengths.max()) for _, lengths in group.flat)
        step = max(1, min(self.batch_size, self.model.token_budget // longest))
        for start in range(0, len(group.positions), step):
            batch = [_batch(ids, lengths, begin, start, start + step).to(self.device)
                     for (ids, lengths), begin in zip(group.flat, begins)]
            if len(group.sides) == 2:
                out = self.model.scores(batch[0], batch[1])  # (b, C) or (b, 1)
            else:
                out = self.model.encode(group.sides[0], batch[0])  # (b, enc_dim)
            yield out.float().cpu().numpy()


def _tokens(seqs: Sequence[np.ndarray]) -> Tokens:
    """Sequences of ids (numpy) as one :class:`Tokens` batch."""
    lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
    return Tokens.from_flat(np.concatenate(seqs).astype(np.int64), lengths)


def _batch(ids: np.ndarray, lengths: np.ndarray, begins: np.ndarray, start: int,
           stop: int) -> Tokens:
    """Sequences ``start:stop`` of a flat side as a :class:`Tokens` batch."""
    lengths = lengths[start:stop]
    first = int(begins[start])
    return Tokens.from_flat(ids[first: first + int(lengths.sum())], lengths)


def _structure_problem(instance: Any, text: tuple[Any, Any]) -> str | None:
    """What is wrong with the shape of one instance, or None (``text``: per side, the model's
    tokenizer, or None for a side of ids)."""
    if not isinstance(instance, dict):
        return f'expected a JSON object with "in0" and/or "in1", got {_kind(instance)}'
    if SIDES[0] not in instance and SIDES[1] not in instance:
        return 'has neither "in0" nor "in1" (send both for scores, one for its embedding)'
    for side, key in enumerate(SIDES):
        value = instance.get(key)
        if key not in instance or (isinstance(value, str) and text[side] is not None):
            continue
        problem = shape_problem(key, value)
        if problem is not None:
            hint = (f" (this model's {key} was trained on token ids, not text)"
                    if isinstance(value, str) else "")
            return problem.message(_WORDING) + hint
    return None


def _kind(value: Any) -> str:
    """JSON's name for the type of a decoded value."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _show(value: Any, limit: int = 60) -> str:
    """A value as JSON, shortened for messages."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# How a request's token problem is worded (the rule itself: object2vec.sequences).
_WORDING = Wording(quote='"', show_value=_show, show_id=str, separator=";", name_booleans=True)

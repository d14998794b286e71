"""The ``catalog`` channel: the items a trained model answers ``top_k`` queries with.

One item per line, ``{"id": "<string>" or <integer>, "in1": <ids or text>}`` (or ``in0``: the side
whose encoder embeds the items; the same key on every line). A side is ids or text as the job's
training data decided (:mod:`object2vec.data.text_inputs`); ids follow the training rules, text is
tokenized with the side's tokenizer. Every problem names the file and line; duplicate ids name both
lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from object2vec.data.records import (
    RECORD_WORDING,
    TOKENIZE_BATCH,
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

SIDES = ("in0", "in1")
BATCH = TOKENIZE_BATCH  # texts tokenized together (read when the reader starts: tests lower it)


@dataclass
class Catalog:
    """The items: their ids (request order of the file), the side that embeds them, their tokens."""

    ids: list[str | int]
    side: int
    tokens: Side


class _Reader:
    """Checks the catalog's lines one by one and collects ids and token sequences."""

    def __init__(self, rules: RecordRules) -> None:
        self.rules = rules
        self.side: int | None = None
        self.first = ""
        self.ids: list[str | int] = []
        self.seen: dict[str | int, str] = {}  # id -> where it was first
        self.flat = FlatIds("i")  # id items
        self.text: TextTokens | None = None  # text items, once the side is known to be text

    def add(self, where: str, line: str) -> None:
        item = parse_line(where, line)
        if not isinstance(item, dict):
            raise UserError(f"{where}: each catalog line must be a JSON object with \"id\" and \"in0\" "
                            f"or \"in1\", got {type(item).__name__}")
        key = self._key(where, item)
        item_id = item.get("id")
        if isinstance(item_id, bool) or not isinstance(item_id, (str, int)) or item_id == "":
            raise UserError(f"{where}: \"id\" must be a non-empty string or an integer, got "
                            f"{show_value(item_id) if 'id' in item else 'none'}")
        if item_id in self.seen:
            raise UserError(f"{where}: duplicate id {show_value(item_id)} (first at {self.seen[item_id]})")
        self.seen[item_id] = where
        self.ids.append(item_id)
        self._tokens(where, key, item[key])

    def _key(self, where: str, item: dict) -> str:
        keys = [k for k in SIDES if k in item]
        if len(keys) != 1:
            raise UserError(f"{where}: a catalog item holds exactly one of \"in0\" and \"in1\" (the "
                            f"side whose encoder embeds it), got {keys or 'neither'}")
        side = SIDES.index(keys[0])
        if self.side is None:
            self.side, self.first = side, where
            if self.rules.text[side] is not None:
                self.text = TextTokens(self.rules.text[side], self.rules.max_seq_lens[side],
                                       "is text without a single token; each item needs at least one",
                                       BATCH)
        elif side != self.side:
            raise UserError(f"{where}: item holds \"{keys[0]}\" but the catalog's items hold "
                            f"\"{SIDES[self.side]}\" (as at {self.first}): one side for every item")
        return keys[0]

    def _tokens(self, where: str, key: str, value: Any) -> None:
        side = SIDES.index(key)
        encoder, max_len = self.rules.text[side], self.rules.max_seq_lens[side]
        if encoder is not None:
            if not isinstance(value, str):
                raise UserError(f"{where}: '{key}' holds {show_value(value)}, but this job's {key} is text")
            assert self.text is not None
            self.text.add(f"{where}: '{key}'", value)
            return
        if isinstance(value, str):
            raise UserError(f"{where}: '{key}' is text, but this job's {key} holds token ids")
        problem = sequence_problem(key, value, max_len, self.rules.vocab_sizes[side])
        if problem is not None:
            text = problem.message(RECORD_WORDING)
            raise UserError(f"{text} ({where})" if problem.place_last else f"{where}: {text}")
        self.flat.append(value[:max_len])

    def finish(self, channel_dir: Path) -> Catalog:
        if self.side is None:
            raise UserError(f"channel 'catalog' has no items in {channel_dir}")
        # a catalog is text or ids throughout: the side decides
        tokens = self.text.side() if self.text is not None else Side.from_lengths(*self.flat.arrays())
        return Catalog(self.ids, self.side, tokens)


def load_catalog(channel_dir: Path, rules: RecordRules) -> Catalog:
    """Read and check every item of the catalog channel.

    Raises:
        UserError: the channel is empty or an item is invalid (file and line), or an id repeats.
    """
    reader = _Reader(rules)
    for path in channel_files(channel_dir):
        for number, line in numbered_lines(path):
            reader.add(f"{path}, line {number}", line)
    return reader.finish(channel_dir)

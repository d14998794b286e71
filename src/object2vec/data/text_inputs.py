"""A job's text sides: which sides are text, and the tokenizer of each.

A side is text when the train channel's first record holds a string there (every other record must
agree: :mod:`object2vec.data.records`). Its tokenizer is the user's ``encN_tokenizer_file`` from the
auxiliary channel, used as is, or one trained on the train channel's text of that side with the
``encN_tokenizer`` model, ``encN_lowercase`` and ``encN_vocab_size`` as the vocabulary budget. When
the two sides share a tokenizer (``tied_token_embedding_weight`` or ``enc1_network=enc0``, both sides
text), enc0's settings train one tokenizer on both sides' text.

    sides = text_sides(hp, train_dir)                 # kinds, checked against the settings
    encoders = build_text_encoders(hp, sides, train_dir, aux_dir)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from object2vec.config.hyperparameters import Hyperparameters
from object2vec.data.auxiliary import resolve_aux_file
from object2vec.data.records import Encoders, channel_texts, sniff_text_sides
from object2vec.errors import UserError
from object2vec.text import TextEncoder, read_text_encoder, train_text_encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextSides:
    """Which sides are text (``kinds``), decided by the record at ``origin``."""

    kinds: tuple[bool, bool]
    origin: str

    def any(self) -> bool:
        return any(self.kinds)

    def shared(self, hp: Hyperparameters) -> bool:
        """Whether one tokenizer serves both sides (both text, and one table or one encoder design)."""
        return all(self.kinds) and (hp.tied_token_embedding_weight or hp.enc1_network == "enc0")


def text_sides(hp: Hyperparameters, train_dir: Path) -> TextSides:
    """The kinds of the job's sides, from the train channel's first record.

    Raises:
        UserError: a setting that does not fit a side's kind (a tokenizer file for a side of ids, a
            vocabulary file for a text side, one table for a text side and a side of ids).
    """
    kinds, origin = sniff_text_sides(train_dir)
    sides = TextSides(kinds, origin)
    problems = []
    for side, text in enumerate(kinds):
        what = f"in{side} is {'text' if text else 'token ids'} (as in {origin})"
        if not text and getattr(hp, f"enc{side}_tokenizer_file"):
            problems.append(f"enc{side}_tokenizer_file is for text inputs, but {what}")
        if text and getattr(hp, f"enc{side}_vocab_file"):
            problems.append(f"enc{side}_vocab_file maps the tokens of id inputs, but {what}: its "
                            f"tokenizer holds the vocabulary (bring your own with "
                            f"enc{side}_tokenizer_file)")
    if hp.tied_token_embedding_weight and kinds[0] != kinds[1]:
        problems.append(f"tied_token_embedding_weight=True needs both sides to be text or both token "
                        f"ids, but in0 is {'text' if kinds[0] else 'ids'} and in1 "
                        f"{'text' if kinds[1] else 'ids'} (as in {origin})")
    if problems:
        raise UserError("; ".join(problems))
    return sides


def build_text_encoders(hp: Hyperparameters, sides: TextSides, train_dir: Path,
                        aux_dir: Path | None, given: Encoders = (None, None)) -> Encoders:
    """Each text side's tokenizer (None for a side of ids); a shared one is one object. ``given``:
    a side's tokenizer that is already decided (a transformer's, from its model folder).

    Raises:
        UserError: a tokenizer file that is missing or unreadable, or whose vocabulary is larger
            than the side's ``encN_vocab_size``.
    """
    encoders: list[TextEncoder | None] = [None, None]
    for side in (0, 1):
        if not sides.kinds[side]:
            continue
        if side == 1 and sides.shared(hp):
            encoders[1] = encoders[0]
            continue
        if given[side] is not None:
            encoders[side] = given[side]
            continue
        encoders[side] = _encoder(hp, side, (0, 1) if sides.shared(hp) else (side,), train_dir, aux_dir)
    return encoders[0], encoders[1]


def _encoder(hp: Hyperparameters, side: int, texts_of: tuple[int, ...], train_dir: Path,
             aux_dir: Path | None) -> TextEncoder:
    cfg = hp.encoder(side)
    key = f"enc{side}_tokenizer_file"
    if cfg.tokenizer_file:
        if aux_dir is None or not aux_dir.is_dir():
            raise UserError(f"{key}={cfg.tokenizer_file!r} needs the 'auxiliary' channel, which this "
                            f"job does not have")
        encoder = read_text_encoder(resolve_aux_file(aux_dir, cfg.tokenizer_file, key),
                                    f"{key} {cfg.tokenizer_file}")
        if encoder.vocab_size > cfg.vocab_size:
            raise UserError(f"{key} {cfg.tokenizer_file} has {encoder.vocab_size} tokens, more than "
                            f"enc{side}_vocab_size={cfg.vocab_size}: set enc{side}_vocab_size to at "
                            f"least {encoder.vocab_size}")
        log.info("enc%d: tokenizer %s from the auxiliary channel, %d tokens", side, cfg.tokenizer_file,
                 encoder.vocab_size)
        return encoder
    start = time.perf_counter()
    encoder = train_text_encoder(channel_texts(train_dir, texts_of), cfg.tokenizer, cfg.vocab_size,
                                 cfg.lowercase)
    log.info("enc%d: %s tokenizer trained on the train channel's %s text in %.1f s: %d tokens "
             "(budget enc%d_vocab_size=%d)", side, cfg.tokenizer, " and ".join(f"in{s}" for s in texts_of),
             time.perf_counter() - start, encoder.vocab_size, side, cfg.vocab_size)
    return encoder

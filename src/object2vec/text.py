"""Text sides: the tokenizer that turns a side's strings into token ids, trained in the job or brought
by the user, saved with the model as a plain ``tokenizer.json`` (Hugging Face ``tokenizers``).

    encoder = train_text_encoder(texts, "wordpiece", vocab_size=30000, lowercase=True)
    ids, lengths = encoder.encode(["a sentence", "its document"], max_len=50)   # flat, as FlatIds

Every trained tokenizer normalises like BERT (``BertNormalizer``: control characters dropped, CJK
characters split, optional lower-casing and accent stripping) and splits words on whitespace and
punctuation (``BertPreTokenizer``); the model (:data:`TOKENIZERS`) then maps each word to one or
more vocabulary entries. ``[UNK]`` (id 0) stands for what the vocabulary cannot spell. No special
tokens are added around a sequence: the encoders pool or convolve the tokens themselves.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, compress, repeat
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from object2vec.errors import UserError
from object2vec.registry import Registry

UNK = "[UNK]"
TOKENIZERS: Registry[Callable[[int], tuple[models.Model, trainers.Trainer]]] = Registry("tokenizer")


@TOKENIZERS.register("wordpiece")
def _wordpiece(vocab_size: int) -> tuple[models.Model, trainers.Trainer]:
    """BERT's subword model: a word is its longest vocabulary prefix, then ``##``-pieces."""
    return (models.WordPiece(unk_token=UNK),
            trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[UNK], show_progress=False))


@TOKENIZERS.register("bpe")
def _bpe(vocab_size: int) -> tuple[models.Model, trainers.Trainer]:
    """Byte-pair encoding over characters (merges learned from the most frequent pairs)."""
    return (models.BPE(unk_token=UNK),
            trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[UNK], show_progress=False))


@TOKENIZERS.register("unigram")
def _unigram(vocab_size: int) -> tuple[models.Model, trainers.Trainer]:
    """SentencePiece's unigram language model over subwords."""
    return (models.Unigram(),
            trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=[UNK], unk_token=UNK,
                                    show_progress=False))


@TOKENIZERS.register("wordlevel")
def _wordlevel(vocab_size: int) -> tuple[models.Model, trainers.Trainer]:
    """The classic behaviour: one id per word (the ``vocab_size - 1`` most frequent), else ``[UNK]``."""
    return (models.WordLevel(unk_token=UNK),
            trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[UNK], show_progress=False))


# The pipelines for which tokenizing each whitespace-separated word on its own gives exactly the
# tokens of the whole text (see TextEncoder.encode): per-character normalizers, and pre-tokenizers
# that split on whitespace before anything else.
_WORD_LOCAL_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFD", "NFKD", "NFC", "NFKC", "StripAccents",
                           "Strip"}
_WORD_LOCAL_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
# Python's str.split() splits at these control characters, but BertNormalizer deletes them (joining
# the words around them) and Rust's char::is_whitespace does not know \x1c-\x1f: texts holding one
# go through the library (found by tests/unit/test_text.py's property test).
_SPLIT_ONLY_IN_PYTHON = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
_SURROGATE = re.compile("[\ud800-\udfff]")
WORD_CACHE_LIMIT = 1_000_000  # distinct words remembered (about 150 MB at most)


class UnencodableText(ValueError):
    """Text that is not Unicode: JSON allows a lone surrogate escape (``"\\ud800"``), which no
    encoding can write. ``index`` is its position in the batch."""

    def __init__(self, index: int) -> None:
        self.index = index
        super().__init__("holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not "
                         "Unicode text")


def _components(spec: dict | None, key: str) -> list[str]:
    """The component types of a normalizer or pre-tokenizer spec, a ``Sequence`` flattened."""
    if spec is None:
        return []
    if spec.get("type") == "Sequence":
        return list(chain.from_iterable(_components(s, key) for s in spec.get(key, [])))
    return [spec.get("type", "")]


class TextEncoder:
    """A side's tokenizer: strings -> flat token ids.

    Args:
        tokenizer: a Hugging Face tokenizer; its padding and truncation settings are switched off
            (truncation to ``encN_max_seq_len`` is done here, after tokenization, as for ids).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        spec = json.loads(tokenizer.to_str())
        self.word_local = (
            set(_components(spec.get("normalizer"), "normalizers")) <= _WORD_LOCAL_NORMALIZERS
            and bool(_components(spec.get("pre_tokenizer"), "pretokenizers"))
            and set(_components(spec.get("pre_tokenizer"), "pretokenizers")) <= _WORD_LOCAL_PRE_TOKENIZERS
            and not any(re.search(r"\s", t.get("content", "")) for t in spec.get("added_tokens", [])))
        # The word cache: word -> entry; entry -> (start, length) of its tokens in _word_ids.
        self._forget()
        self._lock = threading.Lock()  # serving threads share one encoder and its cache

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (its vocabulary and added tokens)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def vocab(self) -> dict[str, int]:
        """Token -> id (for pretrained vectors matched by token)."""
        return self.tokenizer.get_vocab(with_added_tokens=True)

    def to_json(self) -> str:
        """The ``tokenizer.json`` text (what :func:`text_encoder_from_json` reads back)."""
        return self.tokenizer.to_str()

    def encode(self, texts: Sequence[str], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize ``texts`` in one batch: ``(ids (N,) int64, lengths (B,) int64)``, each sequence
        cut to its first ``max_len`` tokens. A text with no tokens (empty, only spaces) has length 0.

        Raises:
            UnencodableText: a text holds a lone surrogate (the first such text is named).
        """
        try:
            return self._encode(texts, max_len)
        except TypeError:  # the library's complaint about a str it cannot take
            bad = next((i for i, text in enumerate(texts) if _SURROGATE.search(text)), None)
            if bad is None:
                raise
            raise UnencodableText(bad) from None

    def _encode(self, texts: Sequence[str], max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
        if self.word_local and not any(map(_SPLIT_ONLY_IN_PYTHON.search, texts)):
            with self._lock:
                ids, lengths = self._encode_by_word(texts)
        else:
            encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
            seqs = [e.ids for e in encodings]
            ids = np.fromiter(chain.from_iterable(seqs), np.int64)
            lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
        if max_len is not None and lengths.size and lengths.max() > max_len:
            starts = np.cumsum(lengths) - lengths
            position = np.arange(ids.size) - np.repeat(starts, lengths)  # (N,) index inside its text
            ids, lengths = ids[position < max_len], np.minimum(lengths, max_len)
        return ids, lengths

    def _encode_by_word(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``encode`` through a cache of each distinct word's tokens, with numpy doing the rest.

        Why not ``Tokenizer.encode_batch`` alone: it builds a Python ``Encoding`` per text, about
        50 us for 50 words on this project's 2-core machine (20,000 lines/s), which made loading
        1,000,000 text pairs take 9x as long as the same pairs as ids. Text repeats its words, so
        the tokenizer here sees each distinct word once and numpy assembles the sequences. Valid
        only for ``word_local`` pipelines, where a text's tokens are its words' tokens in order
        (tests/unit/test_text.py checks that against the tokenizer on arbitrary Unicode).
        """
        splits = [text.split() for text in texts]
        counts = np.fromiter(map(len, splits), np.int64, len(splits))  # (B,) words per text
        words = list(chain.from_iterable(splits))
        index = np.fromiter(map(self._words.get, words, repeat(-1)), np.int64, len(words))  # (W,)
        unknown = index < 0
        if unknown.any():
            new = set(compress(words, unknown))
            if len(self._words) + len(new) > WORD_CACHE_LIMIT:
                self._forget()
                new, unknown = set(words), np.ones(len(words), bool)
            self._learn(sorted(new))
            index[unknown] = np.fromiter(map(self._words.__getitem__, compress(words, unknown)),
                                         np.int64, int(unknown.sum()))
        starts, lengths, table = self._arrays
        word_len = lengths[index]  # (W,) tokens of each word
        out_start = np.cumsum(word_len) - word_len  # where each word's tokens go
        gather = np.repeat(starts[index] - out_start, word_len) + np.arange(int(word_len.sum()))
        text_of_word = np.repeat(np.arange(len(texts)), counts)
        token_counts = np.bincount(text_of_word, weights=word_len, minlength=len(texts))
        return table[gather], token_counts.astype(np.int64)

    def _learn(self, words: list[str]) -> None:
        """Tokenize ``words`` (one batch) and add them to the cache."""
        for word, encoding in zip(words, self.tokenizer.encode_batch_fast(words, add_special_tokens=False)):
            self._words[word] = len(self._word_starts)
            self._word_starts.append(len(self._word_ids))
            self._word_lengths.append(len(encoding.ids))
            self._word_ids.extend(encoding.ids)
        self._arrays = (np.array(self._word_starts, np.int64), np.array(self._word_lengths, np.int64),
                        np.array(self._word_ids, np.int64))

    def _forget(self) -> None:
        self._words: dict[str, int] = {}
        self._word_starts: list[int] = []
        self._word_lengths: list[int] = []
        self._word_ids: list[int] = []
        empty = np.zeros(0, np.int64)
        self._arrays = (empty, empty, empty)  # the three lists as arrays


def train_text_encoder(texts: Iterable[str], model: str, vocab_size: int, lowercase: bool) -> TextEncoder:
    """A tokenizer of ``model`` (a :data:`TOKENIZERS` name) trained on ``texts`` with a vocabulary
    of at most ``vocab_size`` entries, ``[UNK]`` included."""
    tokenizer_model, trainer = TOKENIZERS.get(model)(vocab_size)
    tokenizer = Tokenizer(tokenizer_model)
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)  # accents stripped when lowercased
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainer)
    return TextEncoder(tokenizer)


def text_encoder_from_json(text: str, where: str) -> TextEncoder:
    """A tokenizer from its ``tokenizer.json`` text.

    Raises:
        UserError: naming ``where``, when the text is not a tokenizer the library can read.
    """
    try:
        return TextEncoder(Tokenizer.from_str(text))
    except Exception as exc:  # the Rust side raises a bare Exception with serde's message
        raise UserError(f"{where}: not a Hugging Face tokenizer.json ({str(exc)[:200]})") from None


def read_text_encoder(path: Path, where: str) -> TextEncoder:
    """:func:`text_encoder_from_json` of a file (UTF-8, plain).

    Raises:
        UserError: naming ``where``: the file is unreadable, not UTF-8 or not a tokenizer.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{where}: cannot read file: {exc}") from None
    return text_encoder_from_json(text, where)

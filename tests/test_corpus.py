"""rnnkit.data.corpus: reading text, vocabularies, contiguous splits and parallel streams."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.data import DataError
from rnnkit.data.corpus import (
    PARAGRAPH,
    TokenStream,
    Vocab,
    embedded_text,
    eval_layout,
    read_documents,
    split_tail,
    stream_chunk,
    tokenize,
)


def test_char_vocab_round_trip_and_unknown():
    v = Vocab.build(["hello world"], "char")
    assert v.tokens[0] == "<unk>" and v.tokens[1:] == sorted(set("hello world"))
    assert v.decode(v.encode("hello")) == "hello"
    ids = v.encode("help!")  # 'p' and '!' were never seen
    assert ids.dtype == np.int64 and ids.tolist()[3:] == [0, 0]
    assert v.decode(ids) == "hel\ufffd\ufffd"
    assert Vocab.from_dict(v.to_dict()).tokens == v.tokens


def test_vocab_size_and_min_count_keep_the_frequent_tokens():
    v = Vocab.build(["aaaa bbb cc d"], "char", max_size=3)
    assert v.tokens == ["<unk>", " ", "a"]  # a x4, then space and b x3 tie: the first seen wins
    v = Vocab.build(["aaaa bbb cc d"], "char", min_count=3)
    assert set(v.tokens[1:]) == {"a", "b", " "}
    v = Vocab.build(["The the THE"], "word", lowercase=True)
    assert v.tokens == ["<unk>", "the"] and v.encode("THE tHe").tolist() == [1, 1]


def test_word_tokens_and_spacing():
    text = 'Mr. Bennet\'s daughters, "said" she.\n\n  Next (day)'
    toks = tokenize(text, "word")
    assert toks == ["Mr", ".", "Bennet's", "daughters", ",", '"', "said", '"', "she", ".", PARAGRAPH, "Next", "(",
                    "day", ")"]
    v = Vocab.build([text], "word")
    assert v.decode(v.encode(text)) == 'Mr. Bennet\'s daughters, "said" she.\n\nNext (day)'
    assert v.decode(v.encode("Mr. Darcy")) == "Mr. <unk>"


def test_token_stream_marks_document_starts():
    s = TokenStream.from_arrays([np.array([1, 2, 3]), np.array([], np.int64), np.array([4, 5])], ["a", "b", "c"])
    assert s.ids.tolist() == [1, 2, 3, 4, 5] and s.starts.tolist() == [True, False, False, True, False]
    assert s.names == ("a", "c")  # the empty document vanishes
    assert [d.tolist() for d in s.documents()] == [[1, 2, 3], [4, 5]]
    assert s.num_targets == 3


def test_split_tail_is_contiguous_per_document():
    docs = [np.arange(100), np.arange(100, 140)]
    heads, tails = split_tail(docs, 0.1)
    assert [len(t) for t in tails] == [10, 4]
    for d, h, t in zip(docs, heads, tails, strict=True):
        assert np.array_equal(np.concatenate([h, t]), d)


def test_stream_chunk_shifts_resets_and_masks_at_boundaries():
    s = TokenStream.from_arrays([np.arange(10, 16), np.arange(20, 24)], ["a", "b"])  # 10 tokens, doc b at 6
    c = stream_chunk(s, np.array([0, 4, 8]), 4)
    assert c.x.tolist() == [[10, 11, 12, 13], [14, 15, 20, 21], [22, 23, 10, 11]]
    assert c.y.tolist() == [[11, 12, 13, 14], [15, 20, 21, 22], [23, 10, 11, 12]]
    assert c.resets.tolist() == [[True, False, False, False], [False, False, True, False],
                                 [False, False, True, False]]  # wrapping to the start is a document boundary
    assert c.mask.tolist() == [[True] * 4, [True, False, True, True], [True, False, True, True]]


@pytest.mark.parametrize(("n", "streams", "k"), [(1000, 16, 7), (50, 4, 100), (17, 3, 2), (2, 8, 5)])
def test_eval_layout_predicts_every_target_once(n, streams, k):
    s = TokenStream.from_arrays([np.arange(n)], ["a"])
    pos, end, chunks = eval_layout(n, streams, k)
    seen = []
    for j in range(chunks):
        c = stream_chunk(s, pos + j * k, k, end)
        seen += c.y[c.mask].tolist()
    assert sorted(seen) == list(range(1, n))


def test_read_documents_folder_exclude_newlines_and_errors(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"second\r\nline\r")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "test.txt").write_text("held out")
    (tmp_path / "notes.md").write_text("ignored")
    docs = read_documents([tmp_path], exclude=[tmp_path / "test.txt"])
    assert docs == [("a.txt", "first"), ("b.txt", "second\nline\n")]
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match="not UTF-8.*line 1"):
        read_documents([tmp_path / "bad.txt"])
    with pytest.raises(DataError, match="not found"):
        read_documents([tmp_path / "missing.txt"])
    with pytest.raises(DataError, match="no .txt files"):
        read_documents([tmp_path], exclude=list(tmp_path.glob("*.txt")))


def test_embedded_text_is_small_and_public_domain_austen():
    text = embedded_text("pride_and_prejudice")
    assert text.startswith("PRIDE AND PREJUDICE") and "Chapter 19" in text and "Chapter 20" not in text
    assert len(text.encode()) <= 200_000
    with pytest.raises(DataError, match="unknown embedded text"):
        embedded_text("nope")

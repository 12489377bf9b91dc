import pytest

from n2g_site.config import UserError
from n2g_site.corpus import load_documents, sequences, split_of


def test_folder_reads_txt_and_jsonl_in_sorted_order(text_corpus):
    docs = list(load_documents(str(text_corpus)))
    assert [d.id for d in docs[:4]] == ["doc0.txt", "doc1.txt", "doc2.txt", "doc3.txt"]
    assert docs[4].id == "j1" and docs[4].title == "Jay"
    assert docs[5].id == "more.jsonl:2"


def test_split_is_by_document_and_deterministic():
    ids = [f"doc{i}" for i in range(2000)]
    first = [split_of(i, held_out=0.2, seed=0) for i in ids]
    assert first == [split_of(i, held_out=0.2, seed=0) for i in ids]
    share = first.count("heldout") / len(ids)
    assert 0.16 < share < 0.24
    assert first != [split_of(i, held_out=0.2, seed=1) for i in ids]


def test_long_documents_are_cut_into_rows_led_by_the_doc_start_token():
    from n2g_site.corpus import Document

    docs = iter([Document("a", "a", "x"), Document("b", "b", "y")])
    index = []
    rows = list(sequences(docs, lambda text: list(range(10)), bos_id=99, seq_len=4, held_out=0.5, seed=0, index=index))
    assert [r.tokens for r in rows[:4]] == [(99, 0, 1, 2), (99, 3, 4, 5), (99, 6, 7, 8), (99, 9)]
    assert [r.offset for r in rows[:4]] == [-1, 2, 5, 8]
    assert [e["id"] for e in index] == ["a", "b"] and {r.doc for r in rows} == {0, 1}


def test_invalid_utf8_names_the_file(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(UserError, match="bad.txt.*not valid UTF-8"):
        list(load_documents(str(tmp_path)))


def test_bad_jsonl_line_is_named(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(UserError, match="x.jsonl.*line 2"):
        list(load_documents(str(tmp_path)))


def test_embedded_wiki_corpus_is_shuffled_and_has_titles():
    docs = []
    for doc in load_documents("wiki"):
        docs.append(doc)
        if len(docs) == 50:
            break
    assert all(d.text.strip() and d.title for d in docs)
    assert len({d.id for d in docs}) == 50


def test_invalid_utf8_can_be_skipped_and_counted(tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "good.txt").write_text("fine text")
    docs = list(load_documents(str(tmp_path), bad_utf8="skip"))
    assert [d.id for d in docs] == ["good.txt"]
    assert "skipped 1 file(s) that are not valid UTF-8: bad.txt" in " ".join(capsys.readouterr().err.split())

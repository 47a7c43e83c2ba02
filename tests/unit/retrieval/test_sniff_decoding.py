"""Format by content with the name as a hint, and strict text decoding: what is refused, and
what the message says."""

from __future__ import annotations

import codecs

import pytest

from botkit.retrieval.decoding import declared_html_charset, decode_text
from botkit.retrieval.refusal import DocumentRefused
from botkit.retrieval.sniff import detect_kind


@pytest.mark.parametrize(
    ("name", "data", "mime", "kind"),
    [
        ("notes.txt", b"hello", None, "txt"),
        ("README.md", b"# Title\n\ntext", None, "md"),
        ("page.HTM", b"<p>hi</p>", None, "html"),
        ("report.pdf", b"%PDF-1.7\n...", None, "pdf"),
        ("report", b"junk before\n%PDF-1.4\n", None, "pdf"),  # header within 1024 bytes
        ("upload", b"<!DOCTYPE html><html><body>x", None, "html"),
        ("upload", b"\xef\xbb\xbf  <!-- c --><html lang=en>", None, "html"),
        ("upload", b"# heading", "text/markdown; charset=utf-8", "md"),
        ("data.csv", b"a,b\n1,2", None, "txt"),  # any other text is read as plain text
    ],
)
def test_kinds(name: str, data: bytes, mime: str | None, kind: str) -> None:
    assert detect_kind(name, data, mime) == kind


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("notes.txt", b"PK\x03\x04\x14\x00rest", "is a zip archive"),
        ("report.docx", b"PK\x03\x04\x14\x00rest", ".docx"),
        ("notes.txt.gz", b"\x1f\x8b\x08\x00", "gzip-compressed"),
        ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00", "PNG image"),
        ("scan.jpg", b"\xff\xd8\xff\xe0", "JPEG image"),
        ("clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video"),
    ],
)
def test_unsupported_formats_are_named(name: str, data: bytes, says: str) -> None:
    with pytest.raises(DocumentRefused, match=says) as refused:
        detect_kind(name, data)
    assert ".txt, .md, .pdf and .html" in str(refused.value)


def test_a_text_name_on_a_pdf_is_refused_with_what_it_is() -> None:
    with pytest.raises(DocumentRefused, match=r"named as a \.txt file but its content is a PDF"):
        detect_kind("notes.txt", b"%PDF-1.7\n")


def test_a_pdf_name_on_other_content_is_refused() -> None:
    with pytest.raises(DocumentRefused, match="named as a PDF but is not one"):
        detect_kind("report.pdf", b"<html>not a pdf</html>")


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ("héllo wörld".encode(), "héllo wörld"),
        (codecs.BOM_UTF8 + "héllo".encode(), "héllo"),
        ("héllo 語".encode("utf-16"), "héllo 語"),  # BOM + native order
        (codecs.BOM_UTF16_BE + "héllo".encode("utf-16-be"), "héllo"),
        (b"tabs\tand\r\nnewlines\x0c", "tabs\tand\r\nnewlines\x0c"),
    ],
)
def test_accepted_encodings(data: bytes, text: str) -> None:
    assert decode_text("f.txt", data) == text


def test_invalid_utf8_is_refused_not_guessed() -> None:
    with pytest.raises(DocumentRefused) as refused:
        decode_text("old.txt", "café".encode("cp1252"))
    message = str(refused.value)
    assert "not valid UTF-8 (byte 0xe9 at offset 3)" in message
    assert "UTF-8 (with or without a BOM) or UTF-16 with a BOM" in message


def test_nul_bytes_are_binary() -> None:
    with pytest.raises(DocumentRefused, match="NUL bytes: it looks like a binary file"):
        decode_text("blob.txt", b"abc\x00\x01\x02def")


def test_utf16_without_a_bom_is_refused_as_binary() -> None:
    with pytest.raises(DocumentRefused, match="UTF-16 needs a byte-order mark"):
        decode_text("w.txt", "hello".encode("utf-16-le"))


def test_control_characters_are_binary() -> None:
    with pytest.raises(DocumentRefused, match="control character U\\+0007 at character 2"):
        decode_text("c.txt", b"ab\x07cd")


def test_a_broken_bom_file_is_refused() -> None:
    with pytest.raises(DocumentRefused, match="byte-order mark but is not valid UTF-8-SIG"):
        decode_text("b.txt", codecs.BOM_UTF8 + b"\xff\xfe\xfd")


def test_html_may_declare_a_legacy_charset() -> None:
    page = '<meta charset="windows-1252"><p>café</p>'.encode("cp1252")
    assert declared_html_charset(page) == "windows-1252"
    assert "café" in decode_text("p.html", page, declared_html_charset(page))
    with pytest.raises(DocumentRefused, match="is not valid UTF-8"):
        decode_text("p.html", b"<meta charset=utf-8>\xe9", "utf-8")

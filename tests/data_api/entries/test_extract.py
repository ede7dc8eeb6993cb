"""Content-type sniffing, text extraction and the extraction process pool.

Every input file is built here, hostile ones included (zip bombs, XXE, billion
laughs); the pool is exercised with its test hooks for hangs, memory hogs and
crashes, since no small real file reliably does those.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from data_api.entries.extract import Extracted, extract_file
from data_api.entries.extract_pool import (
    TEST_ALLOCATE,
    TEST_CRASH,
    TEST_SLEEP,
    ExtractionPool,
    PoolClosed,
)
from data_api.entries.sniff import DOCX, extractor_for, file_type_of, sniff
from tests.fixtures.entries import make_docx, make_pdf, make_zip

MAX_CHARS = 100_000
PROJECT_ROOT = Path(__file__).resolve().parents[3]

WriteFile = Callable[[str, bytes], str]


@pytest.fixture
def write_file(tmp_path: Path) -> WriteFile:
    """Write bytes to a file named `name` under tmp_path; returns its path."""

    def write(name: str, data: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    return write


# --- sniffing ----------------------------------------------------------------------------

SIGNATURES = [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    (b"GIF89a\x01\x00\x01\x00", "image/gif"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "application/gzip"),
    (b"BZh91AY&SY\x00\x01", "application/x-bzip2"),
    (b"\xfd7zXZ\x00\x00\x04", "application/x-xz"),
    (b"7z\xbc\xaf\x27\x1c\x00\x04", "application/x-7z-compressed"),
    (b"\x28\xb5\x2f\xfd\x04\x00", "application/zstd"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
    (b"\xff\xfb\x90\x64\x00\x00\x00\x00", "audio/mpeg"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "video/mp4"),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
    (b"OggS\x00\x02\x00\x00", "audio/ogg"),
    (b"SQLite format 3\x00\x10\x00", "application/vnd.sqlite3"),
    (b"\x7fELF\x02\x01\x01\x00", "application/x-executable"),
    (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "application/zip"),
    (b"PK\x05\x06" + bytes(18), "application/zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "application/x-ole-storage"),
    (b"MZ\x90\x00\x03\x00\x00\x00", "application/vnd.microsoft.portable-executable"),
]


@pytest.mark.parametrize(("head", "expected"), SIGNATURES, ids=[e for _, e in SIGNATURES])
def test_sniff_recognises_signature_whatever_the_name(head: bytes, expected: str) -> None:
    assert sniff(head, "upload.bin") == (expected, "bin")
    assert sniff(head, "upload.txt")[0] == expected


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("report.docx", DOCX),
        ("sheet.XLSX", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("book.epub", "application/epub+zip"),
        ("archive.zip", "application/zip"),
        ("page.html", "application/zip"),
    ],
)
def test_sniff_refines_zip_by_extension_only(filename: str, expected: str) -> None:
    assert sniff(b"PK\x03\x04\x14\x00\x06\x00\x08\x00", filename)[0] == expected


def test_sniff_reads_the_mimetype_member_of_odf_and_epub() -> None:
    value = b"application/vnd.oasis.opendocument.text"
    header = (
        b"PK\x03\x04\x0a\x00\x00\x00\x00\x00"
        + bytes(8)
        + len(value).to_bytes(4, "little") * 2
        + len(b"mimetype").to_bytes(2, "little")
        + bytes(2)
    )
    assert sniff(header + b"mimetype" + value, "renamed.zip")[0] == value.decode()


def test_sniff_png_named_html_is_png() -> None:
    assert sniff(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "index.html") == ("image/png", "html")


def test_sniff_binary_junk_named_txt_is_octet_stream() -> None:
    junk = bytes(range(256)) * 4
    assert sniff(junk, "notes.txt") == ("application/octet-stream", "txt")
    assert sniff(b"<html>\x00\x01\x02", "page.html")[0] == "application/octet-stream"


def test_sniff_text_that_begins_like_a_short_signature_stays_text() -> None:
    assert sniff(b"BMW drivers, MZ motorbikes and ID3 tags.\n", "notes.txt")[0] == "text/plain"
    assert sniff(b"BM\x36\x00\x0c\x00\x00\x00", "image")[0] == "image/bmp"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("readme.md", "text/markdown"),
        ("data.csv", "text/csv"),
        ("data.json", "application/json"),
        ("rows.ndjson", "application/x-ndjson"),
        ("rows.jsonl", "application/x-ndjson"),
        ("page.htm", "text/html"),
        ("feed.xml", "application/xml"),
        ("notes.txt", "text/plain"),
        ("script.py", "text/plain"),
        ("no-extension", "text/plain"),
        ("claims.pdf", "text/plain"),
    ],
)
def test_sniff_text_bytes_take_their_type_from_the_extension(filename: str, expected: str) -> None:
    assert sniff(b'{"plain": "text", "line": 1}\n', filename)[0] == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"<!DOCTYPE html>\n<html><body>hi</body></html>", "text/html"),
        (b"\n  <html lang='en'><body>hi</body></html>", "text/html"),
        (b'<?xml version="1.0"?><feed/>', "application/xml"),
        (b"<htmlish>not html</htmlish>", "text/plain"),
    ],
)
def test_sniff_markup_without_a_telling_extension(head: bytes, expected: str) -> None:
    assert sniff(head, "download")[0] == expected


def test_sniff_extension_wins_over_markup_opening() -> None:
    assert sniff(b"<!doctype html><p>x</p>", "notes.txt")[0] == "text/plain"


def test_sniff_utf16_with_bom_is_text() -> None:
    head = codecs.BOM_UTF16_LE + "Hello, world".encode("utf-16-le")
    assert sniff(head, "hello.txt")[0] == "text/plain"
    assert sniff(head[:-1], "hello.md")[0] == "text/markdown"  # a character cut in half


def test_sniff_latin1_text_is_text() -> None:
    assert sniff("Le café est très bon".encode("latin-1"), "menu.csv")[0] == "text/csv"


def test_sniff_empty_file_depends_on_the_extension() -> None:
    assert sniff(b"", "empty.md") == ("text/plain", "md")
    assert sniff(b"", "empty.png") == ("application/octet-stream", "png")
    assert sniff(b"", "empty") == ("application/octet-stream", "")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Report.PDF", "pdf"),
        ("archive.tar.gz", "gz"),
        ("C:\\Users\\me\\notes.TXT", "txt"),
        ("dir/sub/readme.md", "md"),
        ("no-extension", ""),
        (".bashrc", ""),
        ("trailing.", ""),
        ("weird.ex-t", ""),
        ("long.abcdefghijklmnopq", ""),
        ("unicode.été", ""),
    ],
)
def test_file_type_is_a_short_lower_case_extension(filename: str, expected: str) -> None:
    assert file_type_of(filename) == expected


def test_extractor_for_maps_supported_types_and_ignores_parameters() -> None:
    assert extractor_for("text/plain; charset=utf-8") == "text"
    assert extractor_for("Text/Markdown") == "markdown"
    assert extractor_for("application/x-ndjson") == "ndjson"
    assert extractor_for("application/pdf") == "pdf"
    assert extractor_for(DOCX) == "docx"
    assert extractor_for("image/png") is None
    assert extractor_for("application/octet-stream") is None


# --- text and character sets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "content"),
    [
        ("notes.txt", "text/plain", "Plain revenue notes\nsecond line"),
        ("readme.md", "text/markdown", "# Revenue\n\n* forecast for **Q4**"),
        ("data.csv", "text/csv", "region,revenue\nNordics,4200\n"),
        ("data.json", "application/json", '{"region": "Nordics", "revenue": 4200}'),
        ("rows.ndjson", "application/x-ndjson", '{"a": "revenue"}\n{"b": "forecast"}\n'),
    ],
)
def test_text_types_are_extracted_as_written(
    write_file: WriteFile, name: str, content_type: str, content: str
) -> None:
    path = write_file(name, content.encode())
    assert extract_file(path, content_type, MAX_CHARS) == Extracted("done", content, None, None)


def test_invalid_json_is_still_extracted(write_file: WriteFile) -> None:
    path = write_file("broken.json", b'{"revenue": 42,')
    assert extract_file(path, "application/json", MAX_CHARS).text == '{"revenue": 42,'


def test_utf16_with_bom_is_decoded(write_file: WriteFile) -> None:
    path = write_file("wide.txt", "Grüße, revenue €".encode("utf-16"))
    assert extract_file(path, "text/plain", MAX_CHARS).text == "Grüße, revenue €"


def test_latin1_text_is_decoded(write_file: WriteFile) -> None:
    path = write_file("menu.txt", "café".encode("latin-1"))
    assert extract_file(path, "text/plain", MAX_CHARS).text == "café"


def test_cp1251_cyrillic_is_detected(write_file: WriteFile) -> None:
    content = "Привет, как дела? Это тестовый документ на русском языке."
    path = write_file("ru.txt", content.encode("cp1251"))
    assert extract_file(path, "text/plain", MAX_CHARS).text == content


def test_nul_characters_are_stripped(write_file: WriteFile) -> None:
    path = write_file("nul.txt", b"reve\x00nue\nline")
    assert extract_file(path, "text/plain", MAX_CHARS).text == "revenue\nline"


def test_text_over_max_chars_fails_with_the_reason(write_file: WriteFile) -> None:
    path = write_file("long.txt", b"x" * 101)
    assert extract_file(path, "text/plain", 100) == Extracted(
        "failed", None, None, "extracted text exceeds 100 characters"
    )


def test_file_far_over_max_chars_is_not_read_whole(write_file: WriteFile) -> None:
    path = write_file("huge.txt", b"x" * 10_000)
    extracted = extract_file(path, "text/plain", 100)
    assert (extracted.status, extracted.reason) == (
        "failed",
        "extracted text exceeds 100 characters",
    )


def test_unsupported_type_has_no_text(write_file: WriteFile) -> None:
    path = write_file("image.png", b"\x89PNG\r\n\x1a\n")
    assert extract_file(path, "image/png", MAX_CHARS) == Extracted("unsupported", None, None, None)


def test_missing_file_fails_without_raising(tmp_path: Path) -> None:
    extracted = extract_file(str(tmp_path / "gone.txt"), "text/plain", MAX_CHARS)
    assert extracted.status == "failed"
    assert extracted.reason is not None and extracted.reason.startswith("FileNotFoundError")


# --- HTML and XML ------------------------------------------------------------------------


def test_html_keeps_title_and_body_text_only(write_file: WriteFile) -> None:
    html = b"""<!doctype html><html><head><title>Quarterly   report</title>
        <style>body { color: red }</style><script>var secret = "tracking";</script></head>
        <body><h1>Revenue</h1><p>Forecast <b>for</b>\n   Q4</p><!-- hidden comment -->
        <noscript>enable js</noscript><template>template text</template>
        <p>Done</p></body></html>"""
    extracted = extract_file(write_file("page.html", html), "text/html", MAX_CHARS)
    assert extracted == Extracted(
        "done", "Quarterly report\nRevenue\nForecast for Q4\nDone", None, None
    )


@pytest.mark.parametrize(
    ("label", "content", "encoding"),
    [
        ("windows-1251", "Привет", "cp1251"),  # too short to detect: only the label tells
        ("iso-8859-1", "“café”", "cp1252"),  # browsers read Latin-1 labels as Windows-1252
        ("utf-16", "café", "utf-8"),  # a label readable as ASCII cannot be true
    ],
)
def test_html_meta_charset_is_honoured(
    write_file: WriteFile, label: str, content: str, encoding: str
) -> None:
    html = f'<html><head><meta charset="{label}"></head><body>{content}</body></html>'
    path = write_file("page.html", html.encode(encoding))
    assert extract_file(path, "text/html", MAX_CHARS).text == content


def test_html_with_xml_declaration_is_extracted(write_file: WriteFile) -> None:
    html = b'<?xml version="1.0" encoding="utf-8"?><html><body><p>caf\xc3\xa9</p></body></html>'
    assert extract_file(write_file("x.html", html), "text/html", MAX_CHARS).text == "café"


def test_xml_text_of_all_nodes_is_joined_by_spaces(write_file: WriteFile) -> None:
    xml = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
        <report><title>Revenue</title><!-- no --><row>caf\xe9<b>forecast</b>tail</row></report>"""
    extracted = extract_file(write_file("r.xml", xml), "application/xml", MAX_CHARS)
    assert extracted == Extracted("done", "Revenue café forecast tail", None, None)


def test_xml_external_entity_is_not_expanded(write_file: WriteFile) -> None:
    xml = b"""<?xml version="1.0"?>
        <!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>before &e; after</x>"""
    extracted = extract_file(write_file("xxe.xml", xml), "application/xml", MAX_CHARS)
    assert extracted.status == "done"
    assert extracted.text is not None and "root:" not in extracted.text
    assert "before" in extracted.text and "after" in extracted.text


def test_xml_billion_laughs_does_not_blow_up(write_file: WriteFile) -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    xml = f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(entities)}]><lolz>&lol9;</lolz>'
    started = time.monotonic()
    extracted = extract_file(write_file("lol.xml", xml.encode()), "application/xml", MAX_CHARS)
    assert time.monotonic() - started < 2
    assert extracted.status in ("done", "failed")
    assert len(extracted.text or "") < 1000


def test_malformed_xml_fails_with_the_parser_error(write_file: WriteFile) -> None:
    extracted = extract_file(write_file("bad.xml", b"<a><b></a>"), "application/xml", MAX_CHARS)
    assert extracted.status == "failed"
    assert extracted.reason is not None and extracted.reason.startswith("XMLSyntaxError")


# --- PDF and DOCX ------------------------------------------------------------------------


def test_pdf_text_is_extracted_page_by_page(write_file: WriteFile) -> None:
    path = write_file("r.pdf", make_pdf(["Hello revenue", "Forecast page two"]))
    extracted = extract_file(path, "application/pdf", MAX_CHARS)
    assert (extracted.status, extracted.pages) == ("done", 2)
    assert extracted.text is not None
    assert "Hello revenue" in extracted.text and "Forecast page two" in extracted.text


def test_pdf_over_max_chars_fails(write_file: WriteFile) -> None:
    path = write_file("long.pdf", make_pdf(["Hello revenue"] * 5))
    assert (
        extract_file(path, "application/pdf", 30).reason == "extracted text exceeds 30 characters"
    )


def test_corrupt_pdf_fails_with_a_short_reason(write_file: WriteFile) -> None:
    extracted = extract_file(
        write_file("bad.pdf", b"%PDF-1.4\ngarbage"), "application/pdf", MAX_CHARS
    )
    assert extracted.status == "failed"
    assert extracted.reason is not None and 0 < len(extracted.reason) <= 250


def test_docx_paragraphs_and_table_cells_are_extracted(tmp_path: Path) -> None:
    extracted = extract_file(make_docx(tmp_path / "r.docx"), DOCX, MAX_CHARS)
    assert extracted == Extracted(
        "done",
        "Quarterly revenue forecast\nRegion\nTotal\nNordics\n4200\nClosing remarks",
        None,
        None,
    )


def test_docx_zip_bomb_is_refused_unread(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "bomb.docx", {"word/document.xml": 200 * 1024 * 1024})
    assert os.path.getsize(path) < 1024 * 1024
    started = time.monotonic()
    extracted = extract_file(path, DOCX, MAX_CHARS)
    assert time.monotonic() - started < 1
    assert extracted.status == "failed"
    assert extracted.reason is not None and "unpack to 209715" in extracted.reason


def test_docx_member_with_extreme_compression_ratio_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "ratio.docx", {"word/document.xml": 2 * 1024 * 1024})
    extracted = extract_file(path, DOCX, MAX_CHARS)
    assert extracted.status == "failed"
    assert extracted.reason is not None and "over 200:1" in extracted.reason


def test_docx_that_is_not_a_zip_fails(write_file: WriteFile) -> None:
    extracted = extract_file(write_file("fake.docx", b"not a zip at all"), DOCX, MAX_CHARS)
    assert extracted.status == "failed"
    assert extracted.reason is not None and extracted.reason.startswith("BadZipFile")


# --- the process pool --------------------------------------------------------------------


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[ExtractionPool]:
    pool = ExtractionPool(
        workers=2,
        timeout_seconds=1.0,
        memory_bytes=512 * 1024 * 1024,
        max_chars=MAX_CHARS,
        test_hooks=True,
    )
    yield pool
    await pool.close()


async def test_pool_extracts_a_file(pool: ExtractionPool, write_file: WriteFile) -> None:
    path = write_file("r.pdf", make_pdf(["Hello revenue"]))
    extracted = await pool.run(path, "application/pdf")
    assert (extracted.status, extracted.pages) == ("done", 1)
    assert extracted.text is not None and "Hello revenue" in extracted.text


async def test_pool_answers_concurrent_jobs_each_with_its_own_text(
    pool: ExtractionPool, write_file: WriteFile
) -> None:
    paths = [write_file(f"n{n}.txt", f"note number {n}".encode()) for n in range(8)]
    results = await asyncio.gather(*(pool.run(path, "text/plain") for path in paths))
    assert [result.text for result in results] == [f"note number {n}" for n in range(8)]


async def test_pool_times_out_a_hanging_job_and_keeps_answering(
    pool: ExtractionPool, write_file: WriteFile
) -> None:
    path = write_file("a.txt", b"still answering")
    started = time.monotonic()
    hung = await pool.run(path, TEST_SLEEP)
    assert 1.0 <= time.monotonic() - started < 3
    assert hung == Extracted("failed", None, None, "extraction timed out after 1s")
    assert (await pool.run(path, "text/plain")).text == "still answering"


async def test_pool_fails_a_job_over_the_memory_limit_and_keeps_answering(
    pool: ExtractionPool, write_file: WriteFile
) -> None:
    path = write_file("a.txt", b"still answering")
    hog = await pool.run(path, TEST_ALLOCATE)
    assert hog == Extracted("failed", None, None, "extraction ran out of memory")
    assert (await pool.run(path, "text/plain")).text == "still answering"


async def test_pool_replaces_a_worker_that_dies(
    pool: ExtractionPool, write_file: WriteFile
) -> None:
    path = write_file("a.txt", b"still answering")
    crashed = await pool.run(path, TEST_CRASH)
    assert crashed == Extracted("failed", None, None, "extraction process died")
    assert (await pool.run(path, "text/plain")).text == "still answering"


async def test_pool_cancelled_job_does_not_answer_the_next_one(write_file: WriteFile) -> None:
    single = ExtractionPool(workers=1, timeout_seconds=5, memory_bytes=0, max_chars=MAX_CHARS)
    first, second = write_file("1.txt", b"first"), write_file("2.txt", b"second")
    try:
        assert (await single.run(first, "text/plain")).text == "first"  # a warm worker
        cancelled = asyncio.create_task(single.run(first, "text/plain"))
        await asyncio.sleep(0)  # the job is sent; its answer must go nowhere
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert (await single.run(second, "text/plain")).text == "second"
    finally:
        await single.close()


async def test_pool_ignores_test_hooks_unless_enabled(write_file: WriteFile) -> None:
    plain = ExtractionPool(workers=1, timeout_seconds=5, memory_bytes=0, max_chars=MAX_CHARS)
    try:
        extracted = await plain.run(write_file("a.txt", b"x"), TEST_SLEEP)
    finally:
        await plain.close()
    assert extracted == Extracted("unsupported", None, None, None)


async def test_closed_pool_refuses_jobs_and_leaves_no_process(write_file: WriteFile) -> None:
    closing = ExtractionPool(workers=1, timeout_seconds=5, memory_bytes=0, max_chars=MAX_CHARS)
    path = write_file("a.txt", b"x")
    assert (await closing.run(path, "text/plain")).status == "done"
    pids = [worker.process.pid for worker in closing._live]
    await closing.close()
    with pytest.raises(PoolClosed):
        await closing.run(path, "text/plain")
    assert pids and not any(_process_exists(pid) for pid in pids)


def test_workers_exit_when_the_parent_is_killed() -> None:
    parent_script = textwrap.dedent(
        """
        import asyncio, json, sys, tempfile
        from data_api.entries.extract_pool import ExtractionPool

        async def main():
            pool = ExtractionPool(workers=1, timeout_seconds=5, memory_bytes=0, max_chars=100)
            with tempfile.NamedTemporaryFile(suffix=".txt") as file:
                await pool.run(file.name, "text/plain")
            print(json.dumps([w.process.pid for w in pool._live]), flush=True)
            await asyncio.sleep(60)

        if __name__ == "__main__":
            asyncio.run(main())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        children = json.loads(parent.stdout.readline())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 5
    while any(_process_exists(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children and not any(_process_exists(pid) for pid in children)


def _process_exists(pid: int) -> bool:
    """True for a running process; a zombie waiting to be reaped counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

"""Text extraction from one stored entry file: pure, synchronous, never raises.

`extract_file` reads the file at a path according to its sniffed content type
and returns an `Extracted`: `done` with the text, `unsupported` for types with no
text, or `failed` with a short reason (a parser error, a zip bomb, or text over
`max_chars`). It runs inside a worker process of `extract_pool.py`, which bounds
its time and memory; the limits here bound what each parser is fed, so a hostile
file fails fast instead of spending those budgets.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import charset_normalizer
import docx
import lxml.etree
import lxml.html
import pypdf
from docx.table import Table
from docx.text.paragraph import Paragraph

from data_api.entries.sniff import extractor_for

#: Decoding never needs more than 4 bytes per character (UTF-32) plus a BOM.
_BYTES_PER_CHAR = 4
_BOM_ALLOWANCE = 4

#: A DOCX whose parts claim more than this uncompressed is refused unread.
_ZIP_MAX_TOTAL_BYTES = 512 * 1024 * 1024
#: ...and so is one that claims more than 50 bytes per allowed character, though a
#: small budget never refuses the few hundred kilobytes of a blank document's parts.
_ZIP_BYTES_PER_CHAR = 50
_ZIP_MIN_TOTAL_BYTES = 8 * 1024 * 1024
#: Deflate reaches ~1000:1 on filler; real Office parts stay far below 200:1.
_ZIP_MAX_RATIO = 200
#: Members smaller than this cannot hurt whatever their ratio (tiny XML parts compress well).
_ZIP_RATIO_MIN_BYTES = 1024 * 1024

_REASON_CHARS = 200
OUT_OF_MEMORY = "extraction ran out of memory"
#: A broken PDF font map can yield these; they cannot be stored as UTF-8.
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")

#: Elements whose content is never text a reader sees.
_HTML_DROPPED = frozenset({"script", "style", "noscript", "template"})
#: Elements that break a line, so words of adjacent blocks do not run together.
_HTML_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hgroup", "hr", "html", "legend",
        "li", "main", "nav", "ol", "option", "p", "pre", "section", "summary", "table", "tbody",
        "td", "tfoot", "th", "thead", "title", "tr", "ul",
    }
)  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_WHITESPACE_RUN = re.compile(r"\s+")

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: Without a BOM, UTF-16/32 text is full of NULs and never sniffed as text.
_NEVER_GUESSED = ["utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le"]
#: Legacy encodings charset-normalizer recognises reliably (its single-byte guesses
#: on short Western text are often wrong: "café" comes back as cp1006).
_MULTI_BYTE_ENCODINGS = frozenset(
    {
        "big5", "big5hkscs", "cp932", "cp949", "cp950", "euc_jis_2004", "euc_jisx0213",
        "euc_jp", "euc_kr", "gb18030", "gb2312", "gbk", "hz", "iso2022_jp", "iso2022_kr",
        "johab", "shift_jis", "shift_jis_2004", "shift_jisx0213",
    }
)  # fmt: skip
#: Western text decoded as cp1252 is mostly ASCII letters; Cyrillic or Greek is not.
_WESTERN_MAX_NON_ASCII_SHARE = 0.5
_WESTERN_MIN_LETTERS = 8
_WESTERN_SAMPLE_CHARS = 65536


@dataclass(frozen=True)
class Extracted:
    """The outcome of one extraction; `status` is done, unsupported or failed."""

    status: str
    text: str | None
    pages: int | None
    reason: str | None


class ExtractionRefused(Exception):
    """A file refused before or during parsing; the message is the entry's reason."""


def extract_file(path: str, content_type: str, max_chars: int) -> Extracted:
    """Extract the text of the file at `path`; any problem is a `failed` result."""
    kind = extractor_for(content_type)
    if kind is None:
        return Extracted("unsupported", None, None, None)
    try:
        text, pages = _EXTRACTORS[kind](path, max_chars)
    except ExtractionRefused as refused:
        return Extracted("failed", None, None, str(refused))
    except MemoryError:
        return Extracted("failed", None, None, OUT_OF_MEMORY)
    except Exception as error:
        return Extracted("failed", None, None, failure_reason(error))
    text = _LONE_SURROGATES.sub("\ufffd", text.replace("\x00", ""))
    if len(text) > max_chars:
        return Extracted("failed", None, None, _over_limit(max_chars))
    return Extracted("done", text, pages, None)


def failure_reason(error: BaseException) -> str:
    """A short, single-line reason for an entry: the error's class and message."""
    message = _LONE_SURROGATES.sub("\ufffd", " ".join(str(error).split())[:_REASON_CHARS])
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def _over_limit(max_chars: int) -> str:
    """The reason given for text over the limit, wherever the limit is hit."""
    return f"extracted text exceeds {max_chars} characters"


# --- text and its character set ---------------------------------------------------------


def _read_bounded(path: str, max_chars: int) -> bytes:
    """The file's bytes, refused when there are more than `max_chars` could decode from."""
    limit = _BYTES_PER_CHAR * max_chars + _BOM_ALLOWANCE
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ExtractionRefused(_over_limit(max_chars))
    return data


def decode_text(data: bytes) -> str:
    """Decode text of unknown charset: BOM, then UTF-8, then detection, then cp1252."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_legacy(data)


def _decode_legacy(data: bytes) -> str:
    guess = charset_normalizer.from_bytes(data, cp_exclusion=_NEVER_GUESSED).best()
    if guess is not None and guess.encoding in _MULTI_BYTE_ENCODINGS:
        return str(guess)
    western = data.decode("cp1252", errors="replace")
    if guess is None or _looks_western(western):
        return western
    return str(guess)


def _looks_western(text: str) -> bool:
    letters = [char for char in text[:_WESTERN_SAMPLE_CHARS] if char.isalpha()]
    if len(letters) < _WESTERN_MIN_LETTERS:
        return True  # too little to judge; cp1252 is the likeliest legacy charset
    non_ascii = sum(1 for char in letters if not char.isascii())
    return non_ascii / len(letters) <= _WESTERN_MAX_NON_ASCII_SHARE


def _extract_text(path: str, max_chars: int) -> tuple[str, int | None]:
    # JSON and NDJSON are indexed as written: keys and values are all searchable,
    # and a mislabelled file that does not parse is still worth finding.
    return decode_text(_read_bounded(path, max_chars)), None


# --- HTML and XML ------------------------------------------------------------------------


def _extract_html(path: str, max_chars: int) -> tuple[str, int | None]:
    text = _decode_html(_read_bounded(path, max_chars))
    text = _XML_DECLARATION.sub("", text, count=1)  # lxml refuses str input that declares one
    if not text.strip():
        return "", None
    document = lxml.html.document_fromstring(text)
    for node in list(document.iter(lxml.etree.Comment, lxml.etree.PI, *_HTML_DROPPED)):
        _remove_keeping_tail(node)
    return _normalise_lines("".join(_html_text_parts(document))), None


def _decode_html(data: bytes) -> str:
    """Decode by BOM, else by a `<meta charset>` near the top, else by detection."""
    if not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        declared = _META_CHARSET.search(data[:4096])
        if declared is not None:
            try:
                return data.decode(_html_codec(declared.group(1).decode()), errors="replace")
            except (LookupError, UnicodeError):
                pass  # not a text encoding Python knows: detect instead
    return decode_text(data)


def _html_codec(label: str) -> str:
    """The codec for a `<meta charset>` label, read the way browsers read it (WHATWG)."""
    name = codecs.lookup(label).name
    if name in ("ascii", "iso8859-1"):
        return "cp1252"  # pages that say Latin-1 routinely hold Windows-1252 quotes
    if name.startswith(("utf-16", "utf-32")):
        return "utf-8"  # a meta tag readable as ASCII cannot be UTF-16 or UTF-32
    return name


def _remove_keeping_tail(node: Any) -> None:
    """Remove an element or comment but keep the text that follows it."""
    parent = node.getparent()
    if parent is None:
        return
    if node.tail:
        previous = node.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


def _html_text_parts(document: Any) -> Iterator[str]:
    """Text with source line breaks as spaces, as a browser shows it; blocks break lines."""
    # iterwalk instead of recursion: hostile nesting depth must not hit the stack limit.
    for event, element in lxml.etree.iterwalk(document, events=("start", "end")):
        block = element.tag in _HTML_BLOCKS
        if event == "start":
            if block:
                yield "\n"
            if element.text:
                yield _WHITESPACE_RUN.sub(" ", element.text)
        else:
            if block:
                yield "\n"
            if element.tail and element is not document:
                yield _WHITESPACE_RUN.sub(" ", element.tail)


def _normalise_lines(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _extract_xml(path: str, max_chars: int) -> tuple[str, int | None]:
    data = _read_bounded(path, max_chars)
    if not data.strip():
        return "", None
    parser = lxml.etree.XMLParser(
        resolve_entities=False,  # no XXE: entity references stay references
        no_network=True,
        huge_tree=False,  # keeps libxml2's depth and size limits (billion laughs)
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
    )
    root = lxml.etree.fromstring(data, parser)
    return " ".join(_xml_text_parts(root)), None


def _xml_text_parts(root: Any) -> Iterator[str]:
    for node in root.iter():
        # Entity references and the like are not elements; only their tail is text.
        if isinstance(node.tag, str) and node.text and node.text.strip():
            yield node.text.strip()
        if node is not root and node.tail and node.tail.strip():
            yield node.tail.strip()


# --- PDF and DOCX ------------------------------------------------------------------------


def _extract_pdf(path: str, max_chars: int) -> tuple[str, int | None]:
    reader = pypdf.PdfReader(path)
    if reader.is_encrypted and not reader.decrypt(""):
        raise ExtractionRefused("the PDF is encrypted")
    parts: list[str] = []
    length = 0
    for page in reader.pages:
        page_text = page.extract_text() or ""
        parts.append(page_text)
        length += len(page_text) + 1
        if length > max_chars + 1:
            raise ExtractionRefused(_over_limit(max_chars))  # before parsing the other pages
    return "\n".join(parts), len(reader.pages)


def _extract_docx(path: str, max_chars: int) -> tuple[str, int | None]:
    _check_zip_bounds(path, max_chars)
    document = docx.Document(path)
    parts: list[str] = []
    length = 0
    for part in _docx_blocks(document.iter_inner_content()):
        parts.append(part)
        length += len(part) + 1
        if length > max_chars + 1:
            raise ExtractionRefused(_over_limit(max_chars))
    return "\n".join(parts), None


def _check_zip_bounds(path: str, max_chars: int) -> None:
    """Refuse a zip bomb from its directory, before anything is decompressed.

    zipfile never inflates a member past its declared size, so the declared
    sizes are what reading could cost.
    """
    budget = min(max(_ZIP_BYTES_PER_CHAR * max_chars, _ZIP_MIN_TOTAL_BYTES), _ZIP_MAX_TOTAL_BYTES)
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    total = sum(member.file_size for member in members)
    if total > budget:
        raise ExtractionRefused(f"the document's parts unpack to {total} bytes, over {budget}")
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size >= _ZIP_RATIO_MIN_BYTES and ratio > _ZIP_MAX_RATIO:
            raise ExtractionRefused(
                f"the document part {member.filename[:100]!r} is compressed {ratio:.0f}:1,"
                f" over {_ZIP_MAX_RATIO}:1"
            )


def _docx_blocks(blocks: Iterator[Paragraph | Table]) -> Iterator[str]:
    """Paragraph texts and table cell texts in document order (nested tables too)."""
    for block in blocks:
        if isinstance(block, Paragraph):
            if block.text:
                yield block.text
            continue
        for row in block.rows:
            previous: Any = None
            for cell in row.cells:
                if cell._tc is previous:
                    continue  # a merged cell is listed once per grid column it spans
                previous = cell._tc
                yield from _docx_blocks(cell.iter_inner_content())


_EXTRACTORS: dict[str, Callable[[str, int], tuple[str, int | None]]] = {
    "text": _extract_text,
    "markdown": _extract_text,
    "csv": _extract_text,
    "json": _extract_text,
    "ndjson": _extract_text,
    "html": _extract_html,
    "xml": _extract_xml,
    "pdf": _extract_pdf,
    "docx": _extract_docx,
}

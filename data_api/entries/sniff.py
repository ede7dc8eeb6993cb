"""Content-type sniffing for uploaded entries, and which extractor reads each type.

`sniff` decides an entry's `content_type` from its first bytes, in the spirit of
the WHATWG MIME Sniffing standard: a known signature wins; bytes that look like
text get a text type, refined by the extension (and by `<?xml` / `<!doctype
html` / `<html` when the extension says nothing); anything else is
`application/octet-stream`. The client's filename only ever refines what the
bytes allow, so a PNG named `.html` stays `image/png` and binary junk named
`.txt` is never served as text. Types are bare (no `charset` parameter): the
charset is worked out at extraction time, not promised at upload time.

`extractor_for` maps a content type to the extractor kind `extract.py` runs,
or None when the type has no text to extract.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

#: How many leading bytes callers pass to `sniff` (more is ignored).
SNIFF_BYTES = 4096

OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

#: Text types by extension, for bytes that look like text.
_TEXT_BY_EXTENSION: dict[str, str] = {
    "txt": TEXT_PLAIN,
    "text": TEXT_PLAIN,
    "log": TEXT_PLAIN,
    "md": "text/markdown",
    "markdown": "text/markdown",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "jsonl": "application/x-ndjson",
    "html": "text/html",
    "htm": "text/html",
    "xml": "application/xml",
    "yaml": "application/yaml",
    "yml": "application/yaml",
}

#: Every content type `sniff` gives to text-looking bytes.
TEXT_TYPES: frozenset[str] = frozenset(_TEXT_BY_EXTENSION.values())

#: ZIP-based formats, told apart by extension (the bytes only say "zip").
_ZIP_BY_EXTENSION: dict[str, str] = {
    "docx": DOCX,
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "epub": "application/epub+zip",
    "jar": "application/java-archive",
    "apk": "application/vnd.android.package-archive",
}

#: OLE2 compound files (legacy Office), told apart by extension.
_OLE_BY_EXTENSION: dict[str, str] = {
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
    "msg": "application/vnd.ms-outlook",
}

#: Fixed signatures at offset 0, most specific first.
_PREFIX_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"\x1f\x8b\x08", "application/gzip"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"\x28\xb5\x2f\xfd", "application/zstd"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"OggS\x00", "audio/ogg"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (b"\x7fELF", "application/x-executable"),
    (b"\x00asm", "application/wasm"),
    (b"\xfe\xed\xfa\xce", "application/x-mach-binary"),
    (b"\xfe\xed\xfa\xcf", "application/x-mach-binary"),
    (b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\x00\x01\x00\x00", "font/ttf"),
    (b"{\\rtf", "application/rtf"),
    (b"%!PS-Adobe-", "application/postscript"),
)

#: Short printable signatures, trusted only when the bytes are not text: a text
#: file may well begin with "BM" or "MZ".
_WEAK_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"BM", "image/bmp"),
    (b"BZh", "application/x-bzip2"),
    (b"ID3", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
    (b"MZ", "application/vnd.microsoft.portable-executable"),
    (b"wOFF", "font/woff"),
    (b"wOF2", "font/woff2"),
    (b"OTTO", "font/otf"),
    (b"PAR1", "application/vnd.apache.parquet"),
)

#: RIFF containers: the form type at offset 8 says what is inside.
_RIFF_FORMS: dict[bytes, str] = {
    b"WEBP": "image/webp",
    b"WAVE": "audio/wav",
    b"AVI ": "video/x-msvideo",
}

#: ISO base media (`ftyp` box) major brands that are not plain MP4 video.
_FTYP_BRANDS: dict[bytes, str] = {
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"avif": "image/avif",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
}

#: Byte-order marks, longest first (the UTF-32 LE mark starts with UTF-16 LE's).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

#: WHATWG "binary data bytes": control characters no text file contains.
_BINARY_BYTES = frozenset([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_BINARY_CHARS = frozenset(chr(byte) for byte in _BINARY_BYTES)

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_EXTENSION = re.compile(r"[a-z0-9]{1,16}")
_WHITESPACE = b" \t\n\r\x0c"
_HTML_OPENING = re.compile(rb"(?:<!doctype html|<html)[ >\t\n\r\x0c]")

#: Extractor kind per content type (see `extract.py`).
_EXTRACTORS: dict[str, str] = {
    TEXT_PLAIN: "text",
    "application/yaml": "text",
    "text/markdown": "markdown",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/xml": "xml",
    "text/xml": "xml",
    "application/pdf": "pdf",
    DOCX: "docx",
}


def sniff(head: bytes, filename: str) -> tuple[str, str]:
    """`(content_type, file_type)` for a file whose first bytes are `head`."""
    file_type = file_type_of(filename)
    head = head[:SNIFF_BYTES]
    if not head:
        return (TEXT_PLAIN if file_type in _TEXT_BY_EXTENSION else OCTET_STREAM), file_type
    for sniffer in _STRONG_SNIFFERS:
        found = sniffer(head, file_type)
        if found is not None:
            return found, file_type
    if _looks_like_text(head):
        return _text_type(head, file_type), file_type
    for sniffer in _WEAK_SNIFFERS:
        found = sniffer(head, file_type)
        if found is not None:
            return found, file_type
    return OCTET_STREAM, file_type


def file_type_of(filename: str) -> str:
    """The filename's extension, lower-case and without the dot; "" when unusable."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    stem, dot, extension = base.rpartition(".")
    if not dot or not stem.strip("."):
        return ""  # no dot, or a dotfile such as `.bashrc`
    extension = extension.lower()
    return extension if _EXTENSION.fullmatch(extension) else ""


def extractor_for(content_type: str) -> str | None:
    """The extractor kind for a content type (parameters ignored), None if unsupported."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return _EXTRACTORS.get(media_type)


def _sniff_prefix(head: bytes, file_type: str) -> str | None:
    return _match_prefix(head, _PREFIX_SIGNATURES)


def _sniff_weak_prefix(head: bytes, file_type: str) -> str | None:
    return _match_prefix(head, _WEAK_SIGNATURES)


def _match_prefix(head: bytes, signatures: tuple[tuple[bytes, str], ...]) -> str | None:
    for magic, content_type in signatures:
        if head.startswith(magic):
            return content_type
    return None


def _sniff_zip(head: bytes, file_type: str) -> str | None:
    if not head.startswith(_ZIP_MAGICS):
        return None
    declared = _zip_mimetype_member(head)
    if declared is not None:
        return declared  # ODF and EPUB name themselves in a leading `mimetype` member
    return _ZIP_BY_EXTENSION.get(file_type, "application/zip")


def _zip_mimetype_member(head: bytes) -> str | None:
    """The content of a stored `mimetype` first member (ODF/EPUB convention)."""
    name_length = int.from_bytes(head[26:28], "little")
    extra_length = int.from_bytes(head[28:30], "little")
    compressed_size = int.from_bytes(head[18:22], "little")
    method = int.from_bytes(head[8:10], "little")
    if head[30 : 30 + name_length] != b"mimetype" or method != 0 or compressed_size > 100:
        return None
    start = 30 + name_length + extra_length
    value = head[start : start + compressed_size]
    if re.fullmatch(rb"application/[a-z0-9.+-]+", value) is None:
        return None
    return value.decode("ascii")


def _sniff_ole(head: bytes, file_type: str) -> str | None:
    if not head.startswith(_OLE_MAGIC):
        return None
    return _OLE_BY_EXTENSION.get(file_type, "application/x-ole-storage")


def _sniff_riff(head: bytes, file_type: str) -> str | None:
    if not head.startswith(b"RIFF") or len(head) < 12:
        return None
    return _RIFF_FORMS.get(head[8:12], OCTET_STREAM)


def _sniff_ftyp(head: bytes, file_type: str) -> str | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    if box_size < 12 or box_size % 4:
        return None
    return _FTYP_BRANDS.get(head[8:12], "video/mp4")


def _sniff_matroska(head: bytes, file_type: str) -> str | None:
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    return "video/webm" if b"webm" in head[:64] else "video/x-matroska"


def _sniff_tar(head: bytes, file_type: str) -> str | None:
    return "application/x-tar" if head[257:262] == b"ustar" else None


def _sniff_mp3_frame(head: bytes, file_type: str) -> str | None:
    """An MPEG audio frame header without an ID3 tag (WHATWG "mp3 without ID3")."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0b11
    if version == 0b01 or layer == 0 or bitrate in (0, 15) or sample_rate == 0b11:
        return None
    return "audio/mpeg"


#: Sniffers whose signatures no text file starts with, in order; each returns a type or None.
_STRONG_SNIFFERS: tuple[Callable[[bytes, str], str | None], ...] = (
    _sniff_zip,
    _sniff_ole,
    _sniff_riff,
    _sniff_ftyp,
    _sniff_matroska,
    _sniff_prefix,
    _sniff_tar,
)

#: Sniffers for signatures a text file could start with; tried only on binary bytes.
_WEAK_SNIFFERS: tuple[Callable[[bytes, str], str | None], ...] = (
    _sniff_weak_prefix,
    _sniff_mp3_frame,
)


def _looks_like_text(head: bytes) -> bool:
    """True for BOM-marked text that decodes, or bytes free of binary control bytes."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return _decodes_as_text(head[len(bom) :], encoding)
    return not any(byte in _BINARY_BYTES for byte in head)


def _decodes_as_text(data: bytes, encoding: str) -> bool:
    # An incremental decoder tolerates a character cut in half at the end of the head.
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        text = decoder.decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return not any(char in _BINARY_CHARS for char in text)


def _text_type(head: bytes, file_type: str) -> str:
    by_extension = _TEXT_BY_EXTENSION.get(file_type)
    if by_extension is not None:
        return by_extension
    return _markup_type(head) or TEXT_PLAIN


def _markup_type(head: bytes) -> str | None:
    """HTML or XML recognised from the opening of an ASCII-compatible text."""
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    opening = head.lstrip(_WHITESPACE)[:16].lower()
    if opening.startswith(b"<?xml"):
        return "application/xml"
    if _HTML_OPENING.match(opening):
        return "text/html"
    return None

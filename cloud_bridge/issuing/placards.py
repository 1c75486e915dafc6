"""Printable placards: the signed QR plus the lines a person reads, as a PDF and an SVG page.

Both are vector A6 pages with the text as text in a CJK font. The PDF is drawn with reportlab,
which embeds the subset of the font each page uses, so its text prints sharp and can be selected
and searched; its QR is segno's module matrix drawn as filled rectangles. The SVG holds segno's
own SVG of the symbol.

The QR is version 5 at error level L with 2.5 mm modules: level L's version 5 holds as many
alphanumeric characters (154) as level M's version 6, so the same URLs print with four fewer
modules a side and bigger modules on the same page, readable from further away
(docs/codes.md, "Reading distance").
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import segno
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas

from cloud_bridge.issuing.keys import IssuedCode

QR_ERROR = "l"
MAX_QR_VERSION = 5
# The mask segno's own scoring picks most often for our URLs (55 of 200 random tokens at 5-L);
# scoring all eight masks is most of the cost of making a QR, so bulk runs skip it.
BULK_MASK = 1
PAGE_MM = (105.0, 148.0)  # A6
MODULE_MM = 2.5
QR_SIDE_MM = (17 + 4 * MAX_QR_VERSION) * MODULE_MM  # 92.5 mm; smaller versions are centred
# The white around the symbol, to the page's edges and to the text: 6.25 mm, 2.5 modules. The
# standard asks for 4, which at 2.5 mm would need a page 112.5 mm wide; readers need about 1
# (tests/test_placard_scan.py decodes the whole page, text and all).
QUIET_MM = (PAGE_MM[0] - QR_SIDE_MM) / 2
TOP_MARGIN_MM = 4.0
QR_TOP_MM = 18.25  # the title's baseline (11 mm), its descent (1 mm), then the quiet zone
BOTTOM_MARGIN_MM = 3.0
MIN_TEXT_MM = 2.0  # below that a placard line is not worth printing
FONT_ENV = "MASHANG_CJK_FONT"
FONT_PACKAGE = "fonts-wqy-zenhei"
# Debian paths of TrueType CJK fonts, the package named in FONT_PACKAGE first. Not Noto Sans
# CJK: its outlines are PostScript (CFF), which reportlab cannot embed.
FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/arphic/uming.ttc"),
)
SVG_FONT_FAMILY = "'WenQuanYi Zen Hei', 'WenQuanYi Micro Hei', 'AR PL UMing CN', sans-serif"


class PlacardError(Exception):
    """A placard that cannot be made; the message says what to change."""


@dataclass(frozen=True)
class TextLine:
    text: str
    size: float  # mm, the font's em, in quarter millimetres; shrunk to fit the page width
    gap: float  # mm of space above the line


@dataclass(frozen=True)
class PlacedText:
    text: str
    size: float
    baseline: float  # mm from the page's top; the text is centred on the page


@dataclass(frozen=True)
class Placard:
    """A page ready to write: its QR made and its text laid out."""

    stem: str  # file name without extension
    qr: segno.QRCode
    texts: tuple[PlacedText, ...]


def make_qr(url: str, *, mask: int | None = None) -> segno.QRCode:
    """A level L QR of version 5 or below; ``mask`` fixed for bulk runs, else chosen by segno."""
    # boost_error off: every placard of a run the same level, whatever its URL's length.
    qr = segno.make_qr(url, error=QR_ERROR, mask=mask, boost_error=False)
    if qr.version > MAX_QR_VERSION:
        raise PlacardError(
            f"its {len(url)}-character URL needs QR version {qr.version}, over the "
            f"{MAX_QR_VERSION} that prints with {MODULE_MM} mm modules: use a shorter subject "
            "id or base URL"
        )
    return qr


def placard_lines(code: IssuedCode) -> tuple[tuple[TextLine, ...], tuple[TextLine, ...]]:
    """The lines printed above and below the QR."""
    request = code.request
    footer = f"第 {request.generation} 版 · 有效期至 {code.expires.isoformat()}"
    if request.stall is None:
        return (TextLine("一户一码", 7.0, 0),), (
            TextLine(f"户号 {request.subject_id}", 6.5, 0),
            TextLine("管家走访时请扫码登记", 4.0, 3.0),
            TextLine(footer, 3.0, 4.0),
        )
    stall = request.stall
    zone = stall.printed_zone
    place = f"编号 {stall.number} · {zone}" if stall.number else zone
    return (TextLine("流动摊位管理码", 7.0, 0),), (
        TextLine(stall.name, 6.0, 0),
        TextLine(place, 4.25, 1.6),
        TextLine(f"营业时间 {stall.hours}", 4.25, 1.2),
        TextLine("扫码查看证照 · 评价 · 举报", 3.5, 1.8),
        TextLine(f"{request.subject_id} · {footer}", 2.75, 1.8),
    )


def find_cjk_font(candidates: Sequence[Path] = FONT_CANDIDATES) -> Path:
    """The first CJK font found: ``$MASHANG_CJK_FONT`` if set, else a Debian package's."""
    override = os.environ.get(FONT_ENV)
    if override:
        if not Path(override).is_file():
            raise PlacardError(f"{FONT_ENV}={override} is not a file")
        return Path(override)
    for path in candidates:
        if path.is_file():
            return path
    raise PlacardError(
        f"no CJK font found, so Chinese text cannot be printed: install the Debian package "
        f"{FONT_PACKAGE} (apt-get install {FONT_PACKAGE}) or set {FONT_ENV} to a TrueType "
        ".ttf/.ttc file"
    )


class PlacardWriter:
    """Lays out and writes placards with a CJK font, read when the writer is made so that a
    missing or unusable font stops a run before its first file."""

    def __init__(self, font_path: Path | None = None) -> None:
        self.font_path = font_path or find_cjk_font()
        _pdf_font(self.font_path)

    def write_all(
        self,
        codes: Sequence[IssuedCode],
        out_dir: Path,
        *,
        mask: int | None = None,
        workers: int | None = None,
    ) -> None:
        """Prepare every placard, then write them all: a code that cannot be printed stops the
        run before its first file. Bulk runs use every core, as drawing is CPU-bound."""
        workers = workers or os.cpu_count() or 1
        prepare = functools.partial(self.prepare, mask=mask)
        write = functools.partial(self.write, out_dir=out_dir)
        if workers == 1 or len(codes) < 4 * workers:
            placards = [prepare(code) for code in codes]
            out_dir.mkdir(parents=True, exist_ok=True)
            for placard in placards:
                write(placard)
            return
        chunk = max(1, len(codes) // (4 * workers))
        with ProcessPoolExecutor(workers) as pool:
            placards = list(pool.map(prepare, codes, chunksize=chunk))
            out_dir.mkdir(parents=True, exist_ok=True)
            for _ in pool.map(write, placards, chunksize=chunk):
                pass

    def prepare(self, code: IssuedCode, *, mask: int | None = None) -> Placard:
        stem = f"{code.request.kind}-{code.request.subject_id}"
        try:
            qr = make_qr(code.url, mask=mask)
            texts = self._layout(*placard_lines(code))
        except PlacardError as error:
            raise PlacardError(f"{stem}: {error}") from None
        return Placard(stem=stem, qr=qr, texts=texts)

    def write(self, placard: Placard, out_dir: Path) -> tuple[Path, Path]:
        """Write ``<stem>.pdf`` and ``<stem>.svg`` into ``out_dir``."""
        pdf = out_dir / f"{placard.stem}.pdf"
        svg = out_dir / f"{placard.stem}.svg"
        self._write_pdf(placard, pdf)
        svg.write_text(placard_svg(placard), encoding="utf-8")
        return pdf, svg

    def _write_pdf(self, placard: Placard, path: Path) -> None:
        font = _pdf_font(self.font_path)
        width, height = PAGE_MM
        canvas = Canvas(str(path), pagesize=(width * mm, height * mm), pageCompression=1)
        canvas.setTitle(placard.stem)
        for text in placard.texts:
            canvas.setFont(font, text.size * mm)
            canvas.drawCentredString(width / 2 * mm, (height - text.baseline) * mm, text.text)
        # In module units from the symbol's top-left corner, so every coordinate is an integer.
        x, y = _qr_position(placard.qr)
        canvas.translate(x * mm, (height - y) * mm)
        canvas.scale(MODULE_MM * mm, -MODULE_MM * mm)
        modules = canvas.beginPath()
        for row, start, length in _dark_runs(placard.qr):
            modules.rect(start, row, length, 1)
        canvas.drawPath(modules, stroke=0, fill=1)
        canvas.showPage()
        canvas.save()

    def _layout(
        self, above: Sequence[TextLine], below: Sequence[TextLine]
    ) -> tuple[PlacedText, ...]:
        placed: list[PlacedText] = []
        for start, lines in (
            (TOP_MARGIN_MM, above),
            (QR_TOP_MM + QR_SIDE_MM + QUIET_MM, below),
        ):
            baseline = start
            for line in lines:
                size = self._fitting_size(line)
                baseline += line.gap + size
                placed.append(PlacedText(line.text, size, baseline))
        if placed and placed[-1].baseline > PAGE_MM[1] - BOTTOM_MARGIN_MM:
            raise PlacardError("the text does not fit on the page")
        return tuple(placed)

    def _fitting_size(self, line: TextLine) -> float:
        font = _pdf_font(self.font_path)
        missing = sorted(set(line.text) - _font_characters(self.font_path))
        if missing:
            raise PlacardError(
                f"{line.text!r}: the font {self.font_path.name} has no glyph for "
                f"{''.join(missing)!r}, which would print as a box"
            )
        available = (PAGE_MM[0] - 2 * QUIET_MM) * mm
        # In quarter millimetres, so that the sizes tried are exact.
        for quarters in range(round(line.size * 4), round(MIN_TEXT_MM * 4) - 1, -1):
            size = quarters / 4
            if pdfmetrics.stringWidth(line.text, font, size * mm) <= available:
                return size
        raise PlacardError(f"{line.text!r} is too long to print on one line")


def placard_svg(placard: Placard) -> str:
    """The page in millimetres: segno's own SVG of the QR, with the text left as text."""
    x, y = _qr_position(placard.qr)
    width, height = PAGE_MM
    texts = "\n".join(
        f'<text x="{width / 2:g}" y="{text.baseline:g}" font-size="{text.size:g}">'
        f"{escape(text.text)}</text>"
        for text in placard.texts
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}mm" '
        f'height="{height:g}mm" viewBox="0 0 {width:g} {height:g}">\n'
        f'<rect width="{width:g}" height="{height:g}" fill="#fff"/>\n'
        f'<g transform="translate({x:g} {y:g})">'
        f"{placard.qr.svg_inline(scale=MODULE_MM, border=0)}</g>\n"
        f'<g font-family="{SVG_FONT_FAMILY}" text-anchor="middle" fill="#000">\n'
        f"{texts}\n</g>\n</svg>\n"
    )


@functools.lru_cache(maxsize=4)
def _pdf_font(path: Path) -> str:
    """The font's name in reportlab, registered once a process: reading a CJK font (17 MB for
    WenQuanYi Zen Hei) costs more than drawing a hundred placards."""
    name = f"cjk:{path}"
    try:
        pdfmetrics.registerFont(TTFont(name, str(path), subfontIndex=0))
    except (TTFError, OSError) as error:
        raise PlacardError(
            f"the font {path} cannot be embedded in a PDF ({error}): use a TrueType CJK font, "
            f"such as the Debian package {FONT_PACKAGE}'s"
        ) from None
    return name


@functools.lru_cache(maxsize=4)
def _font_characters(path: Path) -> frozenset[str]:
    face = pdfmetrics.getFont(_pdf_font(path)).face
    return frozenset(map(chr, face.charToGlyph))


def _qr_position(qr: segno.QRCode) -> tuple[float, float]:
    """Top-left corner of the symbol (without its quiet zone) in mm, centred in the QR box."""
    side = qr.symbol_size(scale=1, border=0)[0] * MODULE_MM
    return (PAGE_MM[0] - side) / 2, QR_TOP_MM + (QR_SIDE_MM - side) / 2


def _dark_runs(qr: segno.QRCode) -> Iterator[tuple[int, int, int]]:
    """(row, first column, length) of each horizontal run of dark modules."""
    for row, modules in enumerate(qr.matrix):
        column = 0
        for dark, run in itertools.groupby(modules):
            length = len(tuple(run))
            if dark:
                yield row, column, length
            column += length

"""Printable placards: the signed QR plus the lines a person reads, as SVG, PNG and PDF.

Raster output is one bilevel A6 page at 300 dpi. PNG and PDF are written here rather than by
Pillow's encoders: both formats accept the same PNG-predicted zlib stream, so it is compressed
once and shared, which makes encoding four times faster (Pillow's PDF writer would also need
libtiff for a lossless bilevel page, or fall back to JPEG).
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import segno
from PIL import Image, ImageDraw, ImageFont

from cloud_bridge.issuing.keys import IssuedCode

MAX_QR_VERSION = 6
# The mask segno's own scoring picks most often for our URLs; scoring all eight masks is most
# of the cost of making a QR, so bulk runs skip it.
BULK_MASK = 4
DPI = 300
PAGE_SIZE = (1240, 1748)  # A6 (105 x 148 mm) at 300 dpi
PAGE_MM = (105, 148)
PAGE_POINTS = tuple(pixels * 72 / DPI for pixels in PAGE_SIZE)
MODULE_PX = 22  # 1.9 mm modules: a phone reads them from an arm's length
MARGIN = 70
QR_TOP = 190
QR_BOX = (41 + 8) * MODULE_PX  # a version 6 symbol with its quiet zone; smaller ones centred
FONT_ENV = "MASHANG_CJK_FONT"
FONT_PACKAGE = "fonts-wqy-zenhei"
# Debian paths of CJK fonts, the package named in FONT_PACKAGE first.
FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/arphic/uming.ttc"),
)
SVG_FONT_FAMILY = "'WenQuanYi Zen Hei', 'WenQuanYi Micro Hei', 'Noto Sans CJK SC', sans-serif"
MIN_TEXT_SIZE = 24  # about 2 mm high: below that a placard line is not worth printing
# Dark modules are 1 in segno's matrix and 0 (black) on a bilevel page.
_DARK_TO_BLACK = bytes([255, 0]) + bytes(254)
_REVERSED_BITS = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


class PlacardError(Exception):
    """A placard that cannot be made; the message says what to change."""


@dataclass(frozen=True)
class TextLine:
    text: str
    size: int  # pixels at DPI; shrunk to fit the page width when laid out
    gap: int  # space above the line


@dataclass(frozen=True)
class PlacedText:
    text: str
    size: int
    baseline: int  # the text is centred on the page, this far from its top


@dataclass(frozen=True)
class Placard:
    """A page ready to write: its QR made and its text laid out."""

    stem: str  # file name without extension
    qr: segno.QRCode
    texts: tuple[PlacedText, ...]


def make_qr(url: str, *, mask: int | None = None) -> segno.QRCode:
    """A level M QR of version 6 or below; ``mask`` fixed for bulk runs, else chosen by segno."""
    # boost_error off: the level is part of the contract, and boosting would vary per code.
    qr = segno.make_qr(url, error="m", mask=mask, boost_error=False)
    if qr.version > MAX_QR_VERSION:
        raise PlacardError(
            f"its {len(url)}-character URL needs QR version {qr.version}, over the "
            f"{MAX_QR_VERSION} allowed: use a shorter subject id or base URL"
        )
    return qr


def placard_lines(code: IssuedCode) -> tuple[tuple[TextLine, ...], tuple[TextLine, ...]]:
    """The lines printed above and below the QR."""
    request = code.request
    footer = f"第 {request.generation} 版 · 有效期至 {code.expires.isoformat()}"
    if request.stall is None:
        return (TextLine("一户一码", 80, 0),), (
            TextLine(f"户号 {request.subject_id}", 72, 0),
            TextLine("管家走访时请扫码登记", 44, 40),
            TextLine(footer, 34, 60),
        )
    stall = request.stall
    place = f"编号 {stall.number} · {stall.zone}" if stall.number else stall.zone
    return (TextLine("流动摊位管理码", 80, 0),), (
        TextLine(stall.name, 72, 0),
        TextLine(place, 48, 28),
        TextLine(f"营业时间 {stall.hours}", 48, 20),
        TextLine("扫码查看证照 · 评价 · 举报", 38, 36),
        TextLine(f"{request.subject_id} · {footer}", 30, 36),
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
        f"{FONT_PACKAGE} (apt-get install {FONT_PACKAGE}) or set {FONT_ENV} to a .ttf/.ttc file"
    )


class PlacardWriter:
    """Lays out and writes placards with a CJK font, found when the writer is made so that a
    missing font stops a run before its first file."""

    def __init__(self, font_path: Path | None = None) -> None:
        self.font_path = font_path or find_cjk_font()

    def write_all(
        self,
        codes: Sequence[IssuedCode],
        out_dir: Path,
        *,
        mask: int | None = None,
        workers: int | None = None,
    ) -> None:
        """Prepare every placard, then write them all: a code that cannot be printed stops the
        run before its first file. Bulk runs use every core, as rendering is CPU-bound."""
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

    def write(self, placard: Placard, out_dir: Path) -> tuple[Path, Path, Path]:
        """Write ``<stem>.svg``, ``.png`` and ``.pdf`` into ``out_dir``."""
        svg = out_dir / f"{placard.stem}.svg"
        png = out_dir / f"{placard.stem}.png"
        pdf = out_dir / f"{placard.stem}.pdf"
        svg.write_text(placard_svg(placard), encoding="utf-8")
        scanlines = _compressed_scanlines(self.raster(placard))
        png.write_bytes(_png(scanlines))
        pdf.write_bytes(_pdf(scanlines))
        return svg, png, pdf

    def raster(self, placard: Placard) -> Image.Image:
        page = Image.new("1", PAGE_SIZE, 1)
        page.paste(_qr_image(placard.qr), _qr_position(placard.qr))
        for text in placard.texts:
            image, left, top = _rendered_line(self.font_path, text.size, text.text)
            page.paste(image, (PAGE_SIZE[0] // 2 + left, text.baseline + top))
        return page

    def _layout(
        self, above: Sequence[TextLine], below: Sequence[TextLine]
    ) -> tuple[PlacedText, ...]:
        placed: list[PlacedText] = []
        for start, lines in ((MARGIN, above), (QR_TOP + QR_BOX, below)):
            baseline = start
            for line in lines:
                size = self._fitting_size(line)
                baseline += line.gap + size
                placed.append(PlacedText(line.text, size, baseline))
        if placed and placed[-1].baseline > PAGE_SIZE[1] - MARGIN // 2:
            raise PlacardError("the text does not fit on the page")
        return tuple(placed)

    def _fitting_size(self, line: TextLine) -> int:
        available = PAGE_SIZE[0] - 2 * MARGIN
        for size in range(line.size, MIN_TEXT_SIZE - 1, -2):
            if _font(self.font_path, size).getlength(line.text) <= available:
                return size
        raise PlacardError(f"{line.text!r} is too long to print on one line")


def placard_svg(placard: Placard) -> str:
    """Vector output: segno's own SVG of the QR, with the text left as text."""
    x, y = _qr_position(placard.qr)
    width, height = PAGE_SIZE
    texts = "\n".join(
        f'<text x="{width // 2}" y="{text.baseline}" font-size="{text.size}">'
        f"{escape(text.text)}</text>"
        for text in placard.texts
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_MM[0]}mm" '
        f'height="{PAGE_MM[1]}mm" viewBox="0 0 {width} {height}">\n'
        f'<rect width="{width}" height="{height}" fill="#fff"/>\n'
        f'<g transform="translate({x} {y})">'
        f"{placard.qr.svg_inline(scale=MODULE_PX, border=0)}</g>\n"
        f'<g font-family="{SVG_FONT_FAMILY}" text-anchor="middle" fill="#000">\n'
        f"{texts}\n</g>\n</svg>\n"
    )


@functools.lru_cache(maxsize=32)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@functools.lru_cache(maxsize=128)
def _rendered_line(path: Path, size: int, text: str) -> tuple[Image.Image, int, int]:
    """A line drawn once, with its offset from the anchor (centre of the baseline).

    Drawing text is the costliest step of a placard, and a bulk run repeats most lines (the
    title, the hint, a zone, the hours) on every page.
    """
    font = _font(path, size)
    left, top, right, bottom = font.getbbox(text, mode="1", anchor="ms")
    image = Image.new("1", (right - left, bottom - top), 1)
    ImageDraw.Draw(image).text((-left, -top), text, fill=0, font=font, anchor="ms")
    return image, left, top


def _qr_position(qr: segno.QRCode) -> tuple[int, int]:
    """Top-left corner of the symbol (without its quiet zone), centred in the QR box."""
    side = qr.symbol_size(scale=MODULE_PX, border=0)[0]
    return (PAGE_SIZE[0] - side) // 2, QR_TOP + (QR_BOX - side) // 2


def _qr_image(qr: segno.QRCode) -> Image.Image:
    modules = len(qr.matrix)
    pixels = b"".join(qr.matrix).translate(_DARK_TO_BLACK)
    small = Image.frombytes("L", (modules, modules), pixels)
    side = modules * MODULE_PX
    return small.resize((side, side), Image.Resampling.NEAREST).convert(
        "1", dither=Image.Dither.NONE
    )


def _compressed_scanlines(page: Image.Image) -> bytes:
    """The page as PNG image data: each packed row behind filter byte 0, zlib-compressed.

    Pillow packs bilevel rows most significant bit first with 1 for white, which is what both
    PNG (grey, bit depth 1) and PDF (DeviceGray, 1 bit per component) expect.
    """
    # Pillow packs least-significant-bit first twice as fast as in the order PNG wants, and
    # reversing each byte through a table costs next to nothing.
    raw = memoryview(page.tobytes("raw", "1;R").translate(_REVERSED_BITS))
    stride = (page.width + 7) // 8
    rows = b"".join(
        b"\x00" + raw[offset : offset + stride] for offset in range(0, len(raw), stride)
    )
    # Level 1: bilevel pages compress almost as well as at level 6, four times faster.
    return zlib.compress(rows, 1)


def _png(scanlines: bytes) -> bytes:
    width, height = PAGE_SIZE
    pixels_per_metre = round(DPI / 0.0254)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)),
            _png_chunk(b"pHYs", struct.pack(">IIB", pixels_per_metre, pixels_per_metre, 1)),
            _png_chunk(b"IDAT", scanlines),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pdf(scanlines: bytes) -> bytes:
    """A one-page PDF showing the page image at its printed size."""
    width, height = PAGE_SIZE
    page_width, page_height = PAGE_POINTS
    draw = f"q {page_width:.2f} 0 0 {page_height:.2f} 0 0 cm /Im0 Do Q".encode()
    objects = (
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page_width:.2f} {page_height:.2f}] "
        "/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>".encode(),
        f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} "
        "/ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /FlateDecode "
        f"/DecodeParms << /Predictor 15 /Colors 1 /BitsPerComponent 1 /Columns {width} >> "
        f"/Length {len(scanlines)} >>\nstream\n".encode()
        + scanlines
        + b"\nendstream",
        f"<< /Length {len(draw)} >>\nstream\n".encode() + draw + b"\nendstream",
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)

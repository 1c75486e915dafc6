"""Placards as a reader sees them: the printed PDF page rendered by PDFium, then decoded by
zxing-cpp, optionally through a simulated phone camera at a distance."""

from __future__ import annotations

import math
from pathlib import Path

import pypdfium2
import zxingcpp
from PIL import Image, ImageFilter

POINTS_PER_MM = 72 / 25.4
# A phone's scanning app decodes its video preview, not a full photo: 1920 pixels across a 70°
# horizontal field of view. The blur (Gaussian, in camera pixels) stands for the lens, focus
# and demosaicing; with it the old 1.86 mm placard decoded down to 2.2 px a module and failed
# at 2.1, where issue 14 measured a phone failing at 2.2.
CAMERA_PIXELS = 1920
FIELD_OF_VIEW_DEGREES = 70.0
CAMERA_BLUR = 1.0
RENDER_PX_PER_MM = 12.0  # about 300 dpi: fine enough that the camera's pixels set the limit


def render_pdf(path: Path, px_per_mm: float = RENDER_PX_PER_MM) -> Image.Image:
    """The PDF's one page, in grey, as PDFium draws it."""
    document = pypdfium2.PdfDocument(path)
    try:
        assert len(document) == 1, path
        bitmap = document[0].render(scale=px_per_mm / POINTS_PER_MM, grayscale=True)
        return bitmap.to_pil().convert("L")
    finally:
        document.close()


def decode(image: Image.Image) -> zxingcpp.Barcode | None:
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) <= 1
    return found[0] if found else None


def camera_px_per_mm(distance_m: float) -> float:
    """How many camera pixels a millimetre of the placard covers at this distance."""
    field_mm = 2 * distance_m * 1000 * math.tan(math.radians(FIELD_OF_VIEW_DEGREES / 2))
    return CAMERA_PIXELS / field_mm


def seen_from(page: Image.Image, distance_m: float, page_px_per_mm: float) -> Image.Image:
    """The page as the camera records it from ``distance_m`` straight ahead: each camera pixel
    the average of the page under it (box filter), then blurred."""
    scale = camera_px_per_mm(distance_m) / page_px_per_mm
    size = (round(page.width * scale), round(page.height * scale))
    return page.resize(size, Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(CAMERA_BLUR))

"""Stall placards as printed: a vector PDF page whose Chinese text is real text, a QR of version
5 with 2.5 mm modules, and the registry's own name, zone and hours on it. `codes issue` refuses
stalls the registry does not know unless told otherwise, and its issued.csv is a stall list that
`registry import` takes, after which the new stalls' placards scan as licensed."""

from __future__ import annotations

import argparse
import base64
import csv
import datetime
from dataclasses import dataclass
from pathlib import Path

import pypdfium2
import pytest
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_bridge.config import CentralConfig
from cloud_bridge.issuing.cli import add_parser as add_codes_parser
from cloud_bridge.issuing.keys import (
    MANIFEST_FILE,
    SigningKey,
    issue,
    make_request,
    read_keyring,
)
from cloud_bridge.issuing.placards import PlacardError, PlacardWriter, make_qr
from cloud_bridge.registry.admin import ImportProblem, imported
from cloud_bridge.registry.admin import add_parser as add_registry_parser
from cloud_bridge.registry.table import central_registry
from edge.transform.scans import ScanJudge
from mashang.config import load_config
from mashang.registry import Registry, Scanner, Stall, Zone
from tests.helpers.placards import RENDER_PX_PER_MM, decode, render_pdf

pytestmark = pytest.mark.unit

TODAY = datetime.date.today()
NOON = datetime.datetime.combine(TODAY, datetime.time(12, 0))
ZONE = Zone(id="night-market", name="康城夜市A区")
REGISTERED = Stall(id="S0017", name="老王烤串", number="17", zone=ZONE.id, hours="10:00-22:00")
# pypdfium2's page object types (FPDF_PAGEOBJ_*).
TEXT_OBJECT, IMAGE_OBJECT = 1, 3


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mashang")
    subparsers = parser.add_subparsers(required=True)
    add_codes_parser(subparsers)
    add_registry_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


@dataclass(frozen=True)
class Central:
    """A central's config (its registry in its database), and a key directory whose keys it
    holds."""

    config: Path
    keys: Path
    out: Path

    @property
    def registry(self) -> Registry:
        return central_registry(load_config(self.config, CentralConfig))

    def issue_stall(self, *argv: str) -> int:
        common = ("--key-dir", str(self.keys), "--out", str(self.out), "--config", str(self.config))
        return run_cli("codes", "issue", "stall", *argv, *common)

    def manifest(self) -> list[dict[str, str]]:
        with (self.out / MANIFEST_FILE).open(encoding="utf-8", newline="") as file:
            return list(csv.DictReader(file))


@pytest.fixture
def central(tmp_path: Path) -> Central:
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{tmp_path / "central"}"\n', encoding="utf-8")
    keys = tmp_path / "keys"
    assert run_cli("codes", "keygen", "--dir", str(keys)) == 0
    public = {key_id: base64.b64encode(raw).decode() for key_id, raw in read_keyring(keys).items()}
    source = tmp_path / "registry.json"
    source.write_text(Registry(
        zones=[ZONE],
        stalls=[REGISTERED],
        scanners=[Scanner(device_id="gate-1", zone=ZONE.id, purpose="checkin")],
        code_keys=public,
    ).model_dump_json(), encoding="utf-8")
    assert run_cli("registry", "import", str(source), "--config", str(config)) == 0
    return Central(config=config, keys=keys, out=tmp_path / "placards")


def page_text(pdf: Path) -> str:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return document[0].get_textpage().get_text_range()
    finally:
        document.close()


def page_object_types(pdf: Path) -> set[int]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return {item.type for item in document[0].get_objects()}
    finally:
        document.close()


def test_a_registered_stall_prints_the_registrys_name_zone_and_hours(central: Central) -> None:
    assert central.issue_stall("--id", "S0017") == 0
    text = page_text(central.out / "stall-S0017.pdf")
    for line in ("流动摊位管理码", "老王烤串", "编号 17 · 康城夜市A区", "营业时间 10:00-22:00"):
        assert line in text
    assert "night-market" not in text  # the zone by its name, never its id
    (row,) = central.manifest()
    assert (row["name"], row["number"], row["zone"], row["hours"]) == (
        "老王烤串", "17", "night-market", "10:00-22:00"
    )


def test_the_pdf_is_a_vector_page_with_text_and_no_image(central: Central) -> None:
    assert central.issue_stall("--id", "S0017") == 0
    pdf = central.out / "stall-S0017.pdf"
    document = pypdfium2.PdfDocument(pdf)
    try:
        width, height = document[0].get_size()
    finally:
        document.close()
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (105, 148)  # A6
    types = page_object_types(pdf)
    assert TEXT_OBJECT in types and IMAGE_OBJECT not in types


def test_the_qr_is_version_5_level_l_with_modules_of_2_5_mm(central: Central) -> None:
    assert central.issue_stall("--id", "S0017") == 0
    (row,) = central.manifest()
    barcode = decode(render_pdf(central.out / "stall-S0017.pdf"))
    assert barcode is not None and barcode.text == row["url"]
    assert (barcode.extra["Version"], barcode.extra["ECLevel"]) == ("5", "L")
    left, right = barcode.position.top_left.x, barcode.position.top_right.x
    module_mm = (right - left) / RENDER_PX_PER_MM / (17 + 4 * 5)
    assert module_mm == pytest.approx(2.5, abs=0.05)
    # Uppercase URL: alphanumeric mode, 5.5 bits a character; lowercase would need version 7.
    assert make_qr(row["url"]).mode == "alphanumeric"
    lowercase = segno.make(row["url"].lower(), error="l", boost_error=False)
    assert (lowercase.mode, lowercase.version) == ("byte", 7)


def test_the_title_is_drawn_in_a_cjk_font(central: Central) -> None:
    """流动摊位管理码 is seven different glyphs; a font without them draws seven equal boxes."""
    assert central.issue_stall("--id", "S0017") == 0
    page = render_pdf(central.out / "stall-S0017.pdf")
    title = page.crop((0, 0, page.width, round(14 * RENDER_PX_PER_MM)))
    left, top, right, bottom = title.point(lambda v: 255 - v).getbbox()
    width = (right - left) / 7
    cells = {
        title.crop((round(left + n * width), top, round(left + (n + 1) * width), bottom))
        .resize((16, 16))
        .tobytes()
        for n in range(7)
    }
    assert len(cells) == 7


def test_text_the_font_cannot_draw_is_refused() -> None:
    key = SigningKey(key_id=1, private_key=Ed25519PrivateKey.generate())
    request = make_request("stall", "S1", name="烤串🍢", zone="A区", hours="17:00-23:00")
    code = issue(key, request, base="HTTPS://M.DDP.CN", today=TODAY)
    with pytest.raises(PlacardError, match="no glyph for '🍢'"):
        PlacardWriter().prepare(code)


def test_a_font_that_cannot_be_embedded_is_refused_with_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the first file: the writer reads the font when it is made."""
    fake = tmp_path / "fake.ttf"
    fake.write_bytes(b"OTTO" + bytes(60))  # the start of a PostScript-outline font, no more
    monkeypatch.setenv("MASHANG_CJK_FONT", str(fake))
    with pytest.raises(PlacardError, match=r"cannot be embedded in a PDF .*fonts-wqy-zenhei"):
        PlacardWriter()


def test_a_stall_the_registry_does_not_know_is_refused(
    central: Central, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("--id", "S0099", "--name", "夜宵粥铺", "--zone", ZONE.name, "--hours", "18:00-23:00")
    assert central.issue_stall(*argv) == 1
    error = capsys.readouterr().err
    assert "'S0099' is not in the registry" in error and "--allow-unregistered" in error
    assert not central.out.exists()


def test_without_a_registry_a_stall_needs_allow_unregistered(
    central: Central, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("--id", "S0099", "--name", "夜宵粥铺", "--zone", "A区", "--hours", "18:00-23:00")
    paths = ("--key-dir", str(central.keys), "--out", str(central.out))
    assert run_cli("codes", "issue", "stall", *argv, *paths) == 1
    assert "--config CENTRAL.toml, or --allow-unregistered" in capsys.readouterr().err
    assert not central.out.exists()
    assert run_cli("codes", "issue", "stall", *argv, *paths, "--allow-unregistered") == 0
    assert "not in the registry (S0099)" in capsys.readouterr().err
    assert "编号" not in page_text(central.out / "stall-S0099.pdf")
    assert "A区" in page_text(central.out / "stall-S0099.pdf")  # no registry: as given


def test_details_that_differ_from_the_registry_are_refused(
    central: Central, capsys: pytest.CaptureFixture[str]
) -> None:
    assert central.issue_stall("--id", "S0017", "--hours", "17:00-23:30") == 1
    assert "hours '17:00-23:30' differ from the registry's" in capsys.readouterr().err
    assert not central.out.exists()
    # The same values as the registry's, the zone by id or by name, are not a difference.
    same = ("--name", "老王烤串", "--zone", ZONE.name, "--hours", "10:00-22:00")
    assert central.issue_stall("--id", "S0017", *same) == 0


def test_a_zone_the_registry_does_not_know_is_refused(
    central: Central, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("--id", "S0099", "--name", "夜宵粥铺", "--zone", "南门早市", "--hours", "06:00-09:00")
    assert central.issue_stall(*argv, "--allow-unregistered") == 1
    assert "zone '南门早市' is not in the registry's zones (night-market 康城夜市A区)" in (
        capsys.readouterr().err
    )


def test_issued_stalls_imported_into_the_registry_then_scan_as_licensed(
    central: Central, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stalls = tmp_path / "new-stalls.csv"
    stalls.write_text(
        "id,name,number,zone,hours\n"
        f"S0101,夜宵粥铺,101,{ZONE.name},10:00-22:00\n"  # the zone by its name
        f"S0102,糖水铺,,{ZONE.id},11:00-21:00\n",  # and by its id
        encoding="utf-8",
    )
    assert central.issue_stall("--csv", str(stalls), "--allow-unregistered") == 0
    assert "2 stall(s) not in the registry (S0101, S0102)" in capsys.readouterr().err
    rows = central.manifest()
    assert [row["zone"] for row in rows] == [ZONE.id, ZONE.id]
    assert ZONE.name in page_text(central.out / "stall-S0102.pdf")

    def verdicts() -> list[tuple[str, str]]:
        judge = ScanJudge(central.registry)
        return [
            (verdict.result, verdict.reason)
            for verdict in (judge.judge("gate-1", row["url"], "checkin", NOON) for row in rows)
        ]

    assert verdicts() == [("rejected", "unknown_stall")] * 2
    assert run_cli("registry", "import", str(central.out / MANIFEST_FILE),
                   "--config", str(central.config)) == 0
    assert verdicts() == [("accepted", "licensed")] * 2
    added = central.registry.stall("S0101")
    assert added == Stall(id="S0101", name="夜宵粥铺", number="101", zone=ZONE.id,
                          hours="10:00-22:00")
    assert central.registry.stall("S0102").number is None
    # Issuing the new stalls again now takes them from the registry, with no flag.
    assert central.issue_stall("--csv", str(stalls)) == 0


def test_import_of_issued_csv_keeps_registered_stalls_and_leaves_households_out(
    tmp_path: Path,
) -> None:
    issued = tmp_path / MANIFEST_FILE
    issued.write_text(
        "kind,id,generation,expires,key_id,url,name,number,zone,hours\n"
        "stall,S0017,2,2030-01-01,1,HTTPS://M.DDP.CN/S/X,旧名,9,elsewhere,08:00-09:00\n"
        "household,H-0101,1,2030-01-01,1,HTTPS://M.DDP.CN/H/Y,,,,\n"
        "stall,S0200,1,2030-01-01,1,HTTPS://M.DDP.CN/S/Z,早点铺,,night-market,06:00-09:00\n"
        "stall,S0200,2,2030-01-01,1,HTTPS://M.DDP.CN/S/W,早点铺,3,night-market,06:00-10:00\n",
        encoding="utf-8",
    )
    current = Registry(zones=[ZONE], stalls=[REGISTERED])
    updated = imported(current, issued)
    assert updated.version == current.version + 1
    assert updated.stall("S0017") == REGISTERED  # printed from the registry: left as it is
    assert updated.stall("S0200") == Stall(id="S0200", name="早点铺", number="3",
                                           zone="night-market", hours="06:00-10:00")
    assert updated.households == []


def test_a_bad_issued_csv_is_refused_with_its_line(tmp_path: Path) -> None:
    issued = tmp_path / MANIFEST_FILE
    header = "kind,id,generation,expires,key_id,url,name,number,zone,hours\n"
    issued.write_text(
        header + "stall,S0300,1,2030-01-01,1,HTTPS://M.DDP.CN/S/X,粥,,night-market,6pm\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportProblem, match=r"line 2: .*hours"):
        imported(Registry(zones=[ZONE]), issued)
    issued.write_text("kind,id,generation,expires,key_id,url\nstall,S1,1,2030-01-01,1,U\n",
                      encoding="utf-8")
    with pytest.raises(ImportProblem, match="lacks name, number, zone, hours: an older mashang"):
        imported(Registry(zones=[ZONE]), issued)


def test_an_older_issued_csv_stops_the_run_before_any_placard(
    central: Central, capsys: pytest.CaptureFixture[str]
) -> None:
    central.out.mkdir()
    old = "kind,id,generation,expires,key_id,url\nstall,S1,1,2030-01-01,1,U\n"
    (central.out / MANIFEST_FILE).write_text(old, encoding="utf-8")
    assert central.issue_stall("--id", "S0017") == 1
    assert "move it away" in capsys.readouterr().err
    assert sorted(path.name for path in central.out.iterdir()) == [MANIFEST_FILE]
    assert (central.out / MANIFEST_FILE).read_text(encoding="utf-8") == old

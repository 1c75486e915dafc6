"""Placard and household codes: issued in bulk, printed, decoded by a real QR reader from the
printed PDF, and verified offline as a gateway would; every way a code can be wrong is rejected
with its reason."""

from __future__ import annotations

import argparse
import csv
import datetime
import random
import stat
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_bridge.issuing.cli import add_parser as add_codes_parser
from cloud_bridge.issuing.keys import (
    KEYRING_FILE,
    MANIFEST_FILE,
    IssuingError,
    issue_token,
    keygen,
    load_signing_key,
    read_keyring,
    requests_from_csv,
)
from cloud_bridge.issuing.placards import (
    FONT_ENV,
    FONT_PACKAGE,
    MAX_QR_VERSION,
    PlacardError,
    find_cjk_font,
    make_qr,
)
from mashang.codes import (
    EPOCH,
    CodeRejected,
    VerifiedCode,
    code_url,
    decode_token,
    encode_token,
    parse_code,
    signing_payload,
    verify_code,
)
from tests.helpers.placards import decode, render_pdf

BASE = "HTTPS://M.DDP.CN"
TODAY = datetime.date.today()
BULK_SIZE = 1000
HOUSEHOLDS = 20


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mashang")
    add_codes_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@dataclass(frozen=True)
class Issuer:
    key_dir: Path
    key: Ed25519PrivateKey
    keys: dict[int, bytes]

    def url(
        self,
        kind: str = "stall",
        subject: str = "S0001",
        *,
        generation: int = 1,
        expires: datetime.date = TODAY + datetime.timedelta(days=30),
        key: Ed25519PrivateKey | None = None,
        key_id: int = 1,
    ) -> str:
        token = issue_token(key or self.key, key_id, kind, subject, generation, expires)
        return code_url(BASE, kind, token)

    def verify(
        self,
        text: str,
        *,
        min_generation: Mapping[tuple[str, str], int] | None = None,
        denied: frozenset[str] = frozenset(),
        today: datetime.date = TODAY,
    ) -> VerifiedCode:
        return verify_code(
            text, self.keys, today=today, min_generation=min_generation or {}, denied=denied
        )


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    key_dir = tmp_path_factory.mktemp("keys")
    assert run_cli("codes", "keygen", "--dir", str(key_dir)) == 0
    return Issuer(
        key_dir=key_dir,
        key=load_signing_key(key_dir).private_key,
        keys=read_keyring(key_dir),
    )


@pytest.fixture(scope="module")
def bulk(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 stall placards and a few households, issued from CSV files through the CLI."""
    work = tmp_path_factory.mktemp("bulk")
    stalls = work / "stalls.csv"
    with stalls.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "name", "number", "zone", "hours"])
        for n in range(BULK_SIZE):
            zone = "康城夜市A区" if n % 2 else "南门早市"
            writer.writerow([f"S{n:05d}", f"第{n}号小吃摊·烤冷面", n, zone, "17:00-23:30"])
    households = work / "households.csv"
    households.write_text(
        "id,generation\n" + "".join(f"H-{n:04d},{n % 3 + 1}\n" for n in range(HOUSEHOLDS)),
        encoding="utf-8",
    )
    out = work / "placards"
    common = ("--key-dir", str(issuer.key_dir), "--out", str(out), "--base", BASE)
    assert run_cli("codes", "issue", "stall", "--csv", str(stalls), "--allow-unregistered",
                   *common) == 0
    assert run_cli("codes", "issue", "household", "--csv", str(households), *common) == 0
    return out


def manifest(out: Path) -> list[dict[str, str]]:
    with (out / MANIFEST_FILE).open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def decode_pdf(path: Path) -> zxingcpp.Barcode:
    # 4 px/mm: 10 px a module, plenty for the reader and quick to render.
    barcode = decode(render_pdf(path, px_per_mm=4.0))
    assert barcode is not None, path
    return barcode


@pytest.mark.system
def test_every_bulk_placard_decodes_and_verifies(bulk: Path, issuer: Issuer) -> None:
    rows = manifest(bulk)
    assert len(rows) == BULK_SIZE + HOUSEHOLDS
    stems = [f"{row['kind']}-{row['id']}" for row in rows]
    for stem in stems:
        for suffix in (".svg", ".pdf"):
            assert (bulk / f"{stem}{suffix}").stat().st_size > 0, stem + suffix
    barcodes = [decode_pdf(bulk / f"{stem}.pdf") for stem in stems]
    for row, barcode in zip(rows, barcodes, strict=True):
        assert barcode.text == row["url"]
        assert int(barcode.extra["Version"]) <= MAX_QR_VERSION
        assert barcode.extra["ECLevel"] == "L"
        code = issuer.verify(barcode.text)
        assert (code.kind, code.subject_id, code.generation, code.key_id) == (
            row["kind"],
            row["id"],
            int(row["generation"]),
            int(row["key_id"]),
        )
        assert code.expires.isoformat() == row["expires"]
    # A bulk run uses one mask, so that it skips segno's mask scoring.
    assert len({barcode.extra["DataMask"] for barcode in barcodes}) == 1


@pytest.mark.system
def test_svg_keeps_chinese_text_and_the_qr(bulk: Path) -> None:
    svg = (bulk / "stall-S00007.svg").read_text(encoding="utf-8")
    for text in (
        "流动摊位管理码",
        "第7号小吃摊·烤冷面",
        "编号 7 · 康城夜市A区",
        "营业时间 17:00-23:30",
    ):
        assert f">{text}</text>" in svg
    assert 'class="segno"' in svg and "WenQuanYi Zen Hei" in svg
    household = (bulk / "household-H-0003.svg").read_text(encoding="utf-8")
    assert "一户一码" in household and "户号 H-0003" in household


@pytest.mark.unit
def test_single_stall_placard_from_the_cli(issuer: Issuer, tmp_path: Path) -> None:
    stall = ["--id", "S0017", "--name", "老王烤串", "--zone", "夜市A区", "--number", "17"]
    options = ["--hours", "17:00-23:30", "--generation", "2", "--days", "10"]
    paths = ["--key-dir", str(issuer.key_dir), "--out", str(tmp_path), "--base", BASE]
    assert run_cli("codes", "issue", "stall", *stall, *options, *paths,
                   "--allow-unregistered") == 0
    (row,) = manifest(tmp_path)
    code = issuer.verify(decode_pdf(tmp_path / "stall-S0017.pdf").text)
    assert (code.subject_id, code.generation) == ("S0017", 2)
    assert code.expires == TODAY + datetime.timedelta(days=10)
    assert row["expires"] == code.expires.isoformat()


@pytest.mark.unit
def test_cli_writes_nothing_when_a_csv_row_is_bad(issuer: Issuer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,zone,hours\nS1,甲,A区,17:00-23:30\nS2,乙,A区,5pm\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ("--csv", str(bad), "--allow-unregistered", "--key-dir", str(issuer.key_dir),
            "--out", str(out))
    assert run_cli("codes", "issue", "stall", *argv) == 1
    assert not out.exists()
    with pytest.raises(IssuingError, match=r"bad\.csv:3: .*hours"):
        requests_from_csv(bad, "stall", generation=1, valid_days=30)


@pytest.mark.unit
def test_longest_subject_id_fits_version_5_and_a_longer_one_is_refused(issuer: Issuer) -> None:
    fitting = issuer.url("household", "H" * 13)
    assert len(fitting) <= 154
    qr = make_qr(fitting)
    assert qr.version <= MAX_QR_VERSION and qr.mode == "alphanumeric" and qr.error == "L"
    with pytest.raises(PlacardError, match="version 6"):
        make_qr(issuer.url("household", "H" * 14))


@pytest.mark.unit
def test_missing_cjk_font_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FONT_ENV, raising=False)
    with pytest.raises(PlacardError, match=FONT_PACKAGE):
        find_cjk_font(candidates=())


# Rejections. Each is the reason a scanner's red beep reports.


def flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def rejection(issuer: Issuer, text: str, **kwargs) -> str:
    with pytest.raises(CodeRejected) as caught:
        issuer.verify(text, **kwargs)
    return caught.value.reason


@pytest.mark.unit
def test_one_character_flipped_anywhere_is_rejected(issuer: Issuer) -> None:
    url = issuer.url()
    token_start = url.rindex("/") + 1
    reasons = {rejection(issuer, flip(url, index)) for index in range(token_start, len(url))}
    assert "bad_signature" in reasons
    assert reasons <= {"bad_signature", "malformed", "unknown_key"}
    # The signature's characters: only a forgery check can catch these.
    assert rejection(issuer, flip(url, len(url) - 20)) == "bad_signature"


@pytest.mark.unit
def test_signed_by_another_key_is_a_bad_signature(issuer: Issuer) -> None:
    forged = issuer.url(key=Ed25519PrivateKey.generate())
    assert rejection(issuer, forged) == "bad_signature"


@pytest.mark.unit
def test_a_stall_token_behind_the_household_path_is_a_bad_signature(issuer: Issuer) -> None:
    url = issuer.url("stall", "S0001")
    assert rejection(issuer, url.replace("/S/", "/H/")) == "bad_signature"


@pytest.mark.unit
def test_unknown_key_id(issuer: Issuer) -> None:
    assert rejection(issuer, issuer.url(key_id=9)) == "unknown_key"


@pytest.mark.unit
def test_expired_after_its_last_day(issuer: Issuer) -> None:
    url = issuer.url(expires=TODAY)
    assert issuer.verify(url).expires == TODAY
    assert rejection(issuer, url, today=TODAY + datetime.timedelta(days=1)) == "expired"


@pytest.mark.unit
def test_revoked_by_generation(issuer: Issuer) -> None:
    old, new = issuer.url(generation=1), issuer.url(generation=2)
    minimum = {("stall", "S0001"): 2}
    assert rejection(issuer, old, min_generation=minimum) == "revoked"
    assert issuer.verify(new, min_generation=minimum).generation == 2
    # The minimum is per kind: household S0001 is another subject.
    assert issuer.verify(old, min_generation={("household", "S0001"): 2}).generation == 1
    with pytest.raises(CodeRejected, match="revoked"):
        verify_code(old, issuer.keys, today=TODAY, min_generation=lambda kind, id_: 2, denied=())


@pytest.mark.unit
def test_denied_by_subject_kind_and_subject_or_token(issuer: Issuer) -> None:
    url = issuer.url()
    token = parse_code(url).token
    for entry in ("S0001", "stall:S0001", token):
        assert rejection(issuer, url, denied=frozenset({entry})) == "denied"
    assert issuer.verify(url, denied=frozenset({"household:S0001", "S0002"})).subject_id == "S0001"


@pytest.mark.unit
def test_random_junk_is_foreign_or_malformed_and_never_reaches_the_keys() -> None:
    rng = random.Random(4)
    printable = ["".join(rng.choices(string.printable, k=rng.randint(1, 300))) for _ in range(500)]
    base32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    url_shaped = [f"{BASE}/S/" + "".join(rng.choices(base32, k=n)) for n in range(1, 200)]
    samples = [
        "",
        "hello",
        "https://example.com/",
        "HTTPS://M.DDP.CN/S/",
        "HTTPS://M.DDP.CN/X/AEAQ",
        "HTTPS://M.DDP.CN/S/AEAQ/extra",
        "javascript:alert(1)//S/AEAQ",
        "HTTPS://M.DDP.CN/S/!!!!",
        "HTTPS://M.DDP.CN/S/AEAQ====",
        *printable,
        *url_shaped,
    ]
    for text in samples:
        with pytest.raises(CodeRejected) as caught:
            verify_code(text, UntouchableKeys(), today=TODAY, min_generation={}, denied=())
        assert caught.value.reason in {"foreign", "malformed"}, text


class UntouchableKeys(Mapping[int, bytes]):
    """Keys that fail the test if a junk input gets as far as looking one up."""

    def __getitem__(self, key: int) -> bytes:
        raise AssertionError("junk reached the key lookup")

    def __iter__(self) -> Iterator[int]:
        raise AssertionError("junk reached the key lookup")

    def __len__(self) -> int:
        return 1


@pytest.mark.unit
def test_ten_kilobytes_is_too_long(issuer: Issuer) -> None:
    assert rejection(issuer, issuer.url() + "A" * 10_000) == "too_long"
    assert rejection(issuer, "码" * 10_000) == "too_long"
    assert rejection(issuer, "A" * 513) == "too_long"


@pytest.mark.unit
def test_non_ascii(issuer: Issuer) -> None:
    url = issuer.url()
    assert rejection(issuer, url[:-1] + "Ä") == "non_ascii"
    assert rejection(issuer, "码上生活") == "non_ascii"
    assert rejection(issuer, url.replace("/S/", "／S／")) == "non_ascii"


@pytest.mark.unit
def test_malformed_tokens(issuer: Issuer) -> None:
    url = issuer.url()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    # 76 bytes take 122 characters, whose last 2 bits are unused and must be zero: a text with
    # them set would decode to the same bytes and slip past a deny list naming the token.
    assert len(parse_code(url).token) == 122
    assert rejection(issuer, url[:-1] + alphabet[alphabet.index(url[-1]) | 1]) == "malformed"
    assert rejection(issuer, url[:-8]) == "malformed"  # truncated
    token = parse_code(url).token
    fields = decode_token(token)
    body = bytearray(fields.body)
    body[0] = 2  # a version this gateway does not know, properly signed
    signed = encode_token(bytes(body), issuer.key.sign(signing_payload("stall", bytes(body))))
    assert rejection(issuer, code_url(BASE, "stall", signed)) == "malformed"


@pytest.mark.unit
def test_scanner_variations_of_a_valid_code_verify(issuer: Issuer) -> None:
    url = issuer.url("household", "H-0001")
    for text in (url, url.lower(), f"{url}\r\n", url.replace(BASE, "http://127.0.0.1:8080/x")):
        code = issuer.verify(text)
        assert (code.kind, code.subject_id) == ("household", "H-0001")


@pytest.mark.unit
def test_expiry_is_stored_as_days_since_2020(issuer: Issuer) -> None:
    fields = decode_token(parse_code(issuer.url(expires=datetime.date(2030, 1, 1))).token)
    assert fields.expires == datetime.date(2030, 1, 1)
    assert fields.body[-2:] == ((datetime.date(2030, 1, 1) - EPOCH).days).to_bytes(2, "big")


# Keys.


@pytest.mark.unit
def test_keygen_protects_the_private_key_and_rotation_keeps_old_codes_valid(
    tmp_path: Path,
) -> None:
    key_dir = tmp_path / "keys"
    assert keygen(key_dir) == 1
    assert stat.S_IMODE((key_dir / "key-1.pem").stat().st_mode) == 0o600
    old = load_signing_key(key_dir)
    old_url = code_url(BASE, "stall", issue_token(old.private_key, 1, "stall", "S1", 1, TODAY))
    assert run_cli("codes", "keygen", "--dir", str(key_dir)) == 0
    new = load_signing_key(key_dir)
    assert new.key_id == 2
    keys = read_keyring(key_dir)
    assert set(keys) == {1, 2}
    assert '"1"' in (key_dir / KEYRING_FILE).read_text(encoding="utf-8")
    new_url = code_url(BASE, "stall", issue_token(new.private_key, 2, "stall", "S1", 1, TODAY))
    for url, key_id in ((old_url, 1), (new_url, 2)):
        code = verify_code(url, keys, today=TODAY, min_generation={}, denied=())
        assert code.key_id == key_id
    with pytest.raises(IssuingError, match="already"):
        keygen(key_dir, key_id=2)
    assert run_cli("codes", "keygen", "--dir", str(key_dir), "--key-id", "300") == 1

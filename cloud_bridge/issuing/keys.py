"""Issuing placard and household codes: the only place that holds the private keys.

A key directory holds one private key per key id (``key-<id>.pem``, mode 0600) and the public
``keyring.json`` that gateways load. A rotation adds a key id; the keyring keeps the old
public keys so that placards already on the street keep verifying until they expire.
"""

from __future__ import annotations

import csv
import datetime
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mashang.codes import (
    Kind,
    code_url,
    dump_keyring,
    encode_token,
    parse_keyring,
    signing_payload,
    token_body,
)
from mashang.files import atomic_write

KEYRING_FILE = "keyring.json"
MANIFEST_FILE = "issued.csv"
DEFAULT_BASE = "HTTPS://M.DDP.CN"
DEFAULT_GENERATION = 1
DEFAULT_VALID_DAYS = 365
_KEY_FILE_RE = re.compile(r"key-(\d{1,3})\.pem")
# Overnight hours (22:00-02:00) are allowed: night markets run past midnight.
_HOURS_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)")
# The stall's columns make the manifest a stall list that `mashang registry import` takes.
STALL_FIELDS = ("name", "number", "zone", "hours")
MANIFEST_FIELDS = ("kind", "id", "generation", "expires", "key_id", "url", *STALL_FIELDS)


class IssuingError(Exception):
    """A request the issuer cannot serve; the message says what to change."""


@dataclass(frozen=True)
class SigningKey:
    key_id: int
    private_key: Ed25519PrivateKey


@dataclass(frozen=True)
class StallDetails:
    """What a stall placard prints besides its QR."""

    name: str
    zone: str  # the registry's zone id, which scanners match (as given when none was read)
    hours: str
    number: str = ""
    zone_name: str = ""  # the zone as printed; the id when empty

    @property
    def printed_zone(self) -> str:
        return self.zone_name or self.zone


@dataclass(frozen=True)
class IssueRequest:
    kind: Kind
    subject_id: str
    generation: int = DEFAULT_GENERATION
    valid_days: int = DEFAULT_VALID_DAYS
    stall: StallDetails | None = None


@dataclass(frozen=True)
class IssuedCode:
    request: IssueRequest
    key_id: int
    expires: datetime.date
    token: str
    url: str


def keygen(key_dir: Path, key_id: int | None = None) -> int:
    """Create a key pair; the new public key joins the keyring. Returns the key id."""
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keyring = read_keyring(key_dir)
    taken = set(keyring) | set(_private_key_ids(key_dir))
    if key_id is None:
        key_id = max(taken, default=0) + 1
    if not 0 <= key_id <= 0xFF:
        raise IssuingError(f"key id {key_id} is outside 0-255")
    if key_id in taken:
        raise IssuingError(f"key id {key_id} is already in {key_dir}; pick another")
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL claims the key id: a second keygen racing for it fails here instead of replacing a
    # key that placards may already be signed with. The key itself is then written atomically
    # (whole, synced) over the empty claim; mode 0600 from creation on both, so the key is
    # never readable by others, not even briefly.
    key_path = _private_key_path(key_dir, key_id)
    os.close(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    atomic_write(key_path, pem, mode=0o600)
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    # A gateway copying the keyring mid-write must never see half a file; it is public: 0644.
    atomic_write(key_dir / KEYRING_FILE, dump_keyring({**keyring, key_id: public}), mode=0o644)
    return key_id


def read_keyring(key_dir: Path) -> dict[int, bytes]:
    path = key_dir / KEYRING_FILE
    if not path.exists():
        return {}
    return parse_keyring(path.read_text(encoding="utf-8"))


def load_signing_key(key_dir: Path, key_id: int | None = None) -> SigningKey:
    """The private key to sign with: the given id, or the newest one in the directory."""
    available = _private_key_ids(key_dir)
    if not available:
        raise IssuingError(f"no private key in {key_dir}; run `mashang codes keygen` first")
    chosen = max(available) if key_id is None else key_id
    if chosen not in available:
        raise IssuingError(f"no private key with id {chosen} in {key_dir}")
    if chosen not in read_keyring(key_dir):
        # A placard signed by a key the gateways do not know would fail at every scan.
        raise IssuingError(f"key id {chosen} is not in {key_dir / KEYRING_FILE}")
    loaded = serialization.load_pem_private_key(
        _private_key_path(key_dir, chosen).read_bytes(), password=None
    )
    if not isinstance(loaded, Ed25519PrivateKey):
        raise IssuingError(f"key {chosen} in {key_dir} is not an Ed25519 key")
    return SigningKey(key_id=chosen, private_key=loaded)


def issue_token(
    private_key: Ed25519PrivateKey,
    key_id: int,
    kind: Kind,
    subject_id: str,
    generation: int,
    expires: datetime.date,
) -> str:
    body = token_body(key_id=key_id, subject_id=subject_id, generation=generation, expires=expires)
    return encode_token(body, private_key.sign(signing_payload(kind, body)))


def issue(key: SigningKey, request: IssueRequest, *, base: str, today: datetime.date) -> IssuedCode:
    expires = today + datetime.timedelta(days=request.valid_days)
    try:
        token = issue_token(
            key.private_key,
            key.key_id,
            request.kind,
            request.subject_id,
            request.generation,
            expires,
        )
    except ValueError as error:
        raise IssuingError(f"{request.kind} {request.subject_id!r}: {error}") from None
    return IssuedCode(
        request=request,
        key_id=key.key_id,
        expires=expires,
        token=token,
        url=code_url(base, request.kind, token),
    )


def make_request(
    kind: Kind,
    subject_id: str,
    *,
    generation: int = DEFAULT_GENERATION,
    valid_days: int = DEFAULT_VALID_DAYS,
    name: str = "",
    zone: str = "",
    hours: str = "",
    number: str = "",
    zone_name: str = "",
) -> IssueRequest:
    """A validated request; a stall needs its name, zone and hours to print its placard."""
    if valid_days < 1:
        raise IssuingError(f"{kind} {subject_id!r}: validity must be at least 1 day")
    stall = None
    if kind == "stall":
        missing = [
            field
            for field, value in (("name", name), ("zone", zone), ("hours", hours))
            if not value.strip()
        ]
        if missing:
            raise IssuingError(f"stall {subject_id!r}: missing {', '.join(missing)}")
        if not _HOURS_RE.fullmatch(hours.strip()):
            raise IssuingError(f"stall {subject_id!r}: hours {hours!r} must look like 17:00-23:30")
        stall = StallDetails(
            name=name.strip(),
            zone=zone.strip(),
            hours=hours.strip(),
            number=number.strip(),
            zone_name=zone_name.strip(),
        )
    return IssueRequest(
        kind=kind,
        subject_id=subject_id.strip(),
        generation=generation,
        valid_days=valid_days,
        stall=stall,
    )


# A stall's id and the columns given for it -> the details to print (StallDetailsSource).
DetailsResolver = Callable[[str, Mapping[str, str]], Mapping[str, str]]


def requests_from_csv(
    path: Path,
    kind: Kind,
    *,
    generation: int,
    valid_days: int,
    resolve: DetailsResolver | None = None,
) -> list[IssueRequest]:
    """Rows with columns ``id`` (and ``name``, ``zone``, ``hours``, ``number`` for stalls);
    optional ``generation`` and ``days`` columns override the defaults row by row. ``resolve``
    turns a stall's columns into what its placard prints (the registry's record)."""
    # utf-8-sig: spreadsheets exported on Windows start the file with a BOM.
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise IssuingError(f"{path}: the first row must name the columns, including 'id'")
        return [
            _row_request(path, line, row, kind, generation, valid_days, resolve)
            for line, row in enumerate(reader, start=2)
        ]


def check_manifest(out_dir: Path) -> None:
    """Refuse, before anything is written, to append to an ``issued.csv`` of other columns (an
    older mashang's): its rows and the new ones would not line up."""
    path = out_dir / MANIFEST_FILE
    if not path.exists():
        return
    with path.open(encoding="utf-8", newline="") as file:
        header = next(csv.reader(file), [])
    if tuple(header) != MANIFEST_FIELDS:
        raise IssuingError(
            f"{path} has the columns {','.join(header)}, not {','.join(MANIFEST_FIELDS)}: "
            "move it away and issue again, a new one is started"
        )


def write_manifest(out_dir: Path, codes: Iterable[IssuedCode]) -> Path:
    """Append what was issued to ``issued.csv``, the record the central's registry is fed from
    (`mashang registry import issued.csv` registers the stalls it lists)."""
    path = out_dir / MANIFEST_FILE
    is_new = not path.exists()
    with path.open("a", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        if is_new:
            writer.writerow(MANIFEST_FIELDS)
        for code in codes:
            request, stall = code.request, code.request.stall
            details = (stall.name, stall.number, stall.zone, stall.hours) if stall else ("",) * 4
            writer.writerow(
                (
                    request.kind,
                    request.subject_id,
                    request.generation,
                    code.expires.isoformat(),
                    code.key_id,
                    code.url,
                    *details,
                )
            )
    return path


def _row_request(
    path: Path,
    line: int,
    row: Mapping[str, str | None],
    kind: Kind,
    generation: int,
    valid_days: int,
    resolve: DetailsResolver | None,
) -> IssueRequest:
    def text(column: str) -> str:
        return (row.get(column) or "").strip()

    try:
        details: Mapping[str, str] = {field: text(field) for field in STALL_FIELDS}
        if resolve is not None:
            details = resolve(text("id"), details)
        return make_request(
            kind,
            text("id"),
            generation=int(text("generation") or generation),
            valid_days=int(text("days") or valid_days),
            **details,
        )
    except (IssuingError, ValueError) as error:
        raise IssuingError(f"{path}:{line}: {error}") from None


def _private_key_path(key_dir: Path, key_id: int) -> Path:
    return key_dir / f"key-{key_id}.pem"


def _private_key_ids(key_dir: Path) -> list[int]:
    if not key_dir.is_dir():
        return []
    return [
        int(match[1]) for path in key_dir.iterdir() if (match := _KEY_FILE_RE.fullmatch(path.name))
    ]

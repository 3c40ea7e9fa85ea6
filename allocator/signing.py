"""Signing records with a fund's ed25519 key, and checking signatures against trusted keys.

A record of any kind (decision, settlement) is signed by `sign_record(folder, key)`, which
writes `signature.json` beside `manifest.json`. It is never listed in the manifest it signs.
The signature covers a small canonical JSON payload: the SHA-256 of the exact manifest.json
bytes, the signer's name, the key's fingerprint and the UTC time, so the name and the time an
auditor is shown are signed too.

Keys: `allocator keys init --name NAME --out DIR` writes `DIR/<slug>.key` (private key, PEM,
mode 0600, never overwritten) and `DIR/<slug>.pub` (public key, PEM). Both start with a
`Signer: NAME` line (text before a PEM block is allowed by RFC 7468). A run signs when given
`--sign-key PATH` or when the environment variable ALLOCATOR_SIGNING_KEY names a private key.
A public key shipped inside a record proves nothing against a forger, so `verify` trusts only
keys the auditor names (`--public-key FILE_OR_FOLDER`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from allocator.atomic import atomic_path
from allocator.errors import SigningKeyError

SIGNATURE_FILE = "signature.json"
MANIFEST = "manifest.json"
ENV_KEY = "ALLOCATOR_SIGNING_KEY"
ALGORITHM = "ed25519"
MAX_SIGNER_CHARS = 100


@dataclass(frozen=True)
class SigningKey:
    name: str
    private: Ed25519PrivateKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.private.public_key())


@dataclass(frozen=True)
class TrustedKey:
    name: str
    public: Ed25519PublicKey
    path: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)


def fingerprint(public: Ed25519PublicKey) -> str:
    """SHA256 of the raw 32-byte public key, as `sha256:<hex>`."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def key_slug(name: str) -> str:
    """The file-name stem for a signer's name: letters, digits, '.', '_' and '-' only."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip(".-_")
    return slug[:60] or "signing-key"


def _check_signer(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise SigningKeyError("--name must not be blank")
    if len(name) > MAX_SIGNER_CHARS:
        raise SigningKeyError(f"--name is {len(name)} characters; the limit is {MAX_SIGNER_CHARS}")
    return name


def init_keys(name: str, out_dir: Path) -> tuple[Path, Path]:
    """Make a new key pair; refuses to overwrite either file. Returns (private, public) paths."""
    name = _check_signer(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = key_slug(name)
    private_path, public_path = out_dir / f"{slug}.key", out_dir / f"{slug}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise SigningKeyError(f"{path} already exists; a key is never overwritten (move it away "
                                  "first, or choose another --name or --out)")
    key = Ed25519PrivateKey.generate()
    header = f"Signer: {name}\n".encode()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    # O_EXCL: never replace a key, even one created between the check above and now
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(header + private_pem)
    os.chmod(private_path, 0o600)  # whatever the umask
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(header + public_pem)
    return private_path, public_path


def _signer_line(data: bytes, path: Path) -> str:
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if first.lower().startswith("signer:"):
        return first.split(":", 1)[1].strip() or path.stem
    return path.stem


def load_private(path: Path) -> SigningKey:
    """A private key file; refused when others may read it (as ssh refuses such a key)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise SigningKeyError(f"signing key {path}: others may read it (mode {mode & 0o777:o}); "
                                  f"a private key must be yours alone: chmod 600 {path}")
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
    except OSError as exc:
        raise SigningKeyError(f"signing key {path}: cannot read it ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"signing key {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"signing key {path}: not an ed25519 key")
    return SigningKey(_signer_line(data, path), key)


def load_trusted(paths: list[Path]) -> list[TrustedKey]:
    """Public keys from files, or from every *.pub file of a folder."""
    out: list[TrustedKey] = []
    for path in map(Path, paths):
        files = sorted(path.glob("*.pub")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise SigningKeyError(f"trusted keys folder {path} holds no *.pub file")
        for file in files:
            try:
                data = file.read_bytes()
                key = serialization.load_pem_public_key(data)
            except OSError as exc:
                raise SigningKeyError(f"public key {file}: cannot read it ({exc.strerror})") from None
            except (ValueError, TypeError) as exc:
                raise SigningKeyError(f"public key {file}: not a PEM public key ({exc})") from None
            if not isinstance(key, Ed25519PublicKey):
                raise SigningKeyError(f"public key {file}: not an ed25519 key")
            out.append(TrustedKey(_signer_line(data, file), key, file))
    return out


def key_from_env() -> Path | None:
    """The private key ALLOCATOR_SIGNING_KEY names, if set."""
    value = os.environ.get(ENV_KEY, "").strip()
    return Path(value) if value else None


def _payload(manifest_sha256: str, signer: str, key_fp: str, signed_utc: str) -> bytes:
    data = {"algorithm": ALGORITHM, "key_fingerprint": key_fp, "manifest_sha256": manifest_sha256,
            "signed_utc": signed_utc, "signer": signer}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_record(folder: Path, key: SigningKey | Path) -> Path:
    """Sign `folder/manifest.json` (any record kind): writes `folder/signature.json`."""
    if not isinstance(key, SigningKey):
        key = load_private(Path(key))
    folder = Path(folder)
    manifest_sha = hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    signed_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload = _payload(manifest_sha, key.name, key.fingerprint, signed_utc)
    signature = base64.b64encode(key.private.sign(payload)).decode("ascii")
    doc = {"format": 1, "algorithm": ALGORITHM, "signer": key.name, "key_fingerprint": key.fingerprint,
           "signed_utc": signed_utc, "manifest_sha256": manifest_sha, "signature": signature,
           "signs": "the SHA-256 of manifest.json's exact bytes, with signer, key_fingerprint and "
                    "signed_utc (canonical JSON of these fields and algorithm)"}
    target = folder / SIGNATURE_FILE
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    return target


def check_signature(folder: Path, trusted: list[TrustedKey] | list[Path] | None, out) -> None:
    """Add what the signature says to `out` (a Verification): notes, warnings or problems.

    Unsigned: a note (an error only when the auditor gave trusted keys, who then expects a
    signature). Signed, no trusted key given: a warning that the signature was not checked.
    """
    folder = Path(folder)
    keys = list(trusted or [])
    if keys and not all(isinstance(k, TrustedKey) for k in keys):
        keys = load_trusted([Path(p) for p in keys])
    path = folder / SIGNATURE_FILE
    if not path.is_file():
        if keys:
            out.problems.append("unsigned: the record has no signature.json, but trusted keys were "
                                "given, so a signature was expected")
        else:
            out.notes.append("unsigned (no signature.json)")
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        signer, key_fp = str(doc["signer"]), str(doc["key_fingerprint"])
        signed_utc, manifest_sha = str(doc["signed_utc"]), str(doc["manifest_sha256"])
        signature = base64.b64decode(doc["signature"], validate=True)
        if doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {doc.get('algorithm')!r}, expected {ALGORITHM}")
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        out.problems.append(f"signature.json is not a readable signature ({type(exc).__name__}: {exc})")
        return
    actual = hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    if manifest_sha != actual:
        out.problems.append("signature.json signs another manifest.json (its manifest_sha256 "
                            f"{manifest_sha[:16]}... is not the manifest's {actual[:16]}...): the "
                            "manifest was changed after signing")
    if not keys:
        out.warnings.append(f"signed by {signer!r} (key {key_fp}) at {signed_utc}, but no trusted "
                            "public key was given (--public-key): the signature was not checked")
        return
    match = [k for k in keys if k.fingerprint == key_fp]
    if not match:
        out.problems.append(f"signature.json: signed with key {key_fp} (claimed signer {signer!r}), "
                            "which is none of the trusted keys ("
                            + ", ".join(f"{k.name} {k.fingerprint}" for k in keys) + ")")
        return
    key = match[0]
    try:
        key.public.verify(signature, _payload(actual, signer, key_fp, signed_utc))
    except InvalidSignature:
        out.problems.append(f"signature.json: the signature does not verify with the trusted key "
                            f"{key.path} ({key.name}): the manifest or the signature was changed, "
                            "or it was made with another key")
        return
    out.notes.append(f"signed by {key.name} (key {key_fp}, trusted key {key.path}) at {signed_utc}: "
                     "signature valid")
    if signer != key.name:
        out.warnings.append(f"signature.json names the signer {signer!r}; the trusted key file names "
                            f"{key.name!r}")

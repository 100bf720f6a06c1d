"""Signed model manifests: OpenSSF `model-signing` with an elliptic-curve key pair, offline.

`push` signs `models/<version>/manifest.json` with the training side's private key and stores the
Sigstore bundle beside it as `manifest.sig`. Every reader (the service, `evaluate`, the CLI,
rollback) verifies that signature with the public key before it trusts any hash in the manifest,
and every artifact is checked against its hash in the manifest before use. Whoever can write to the
bucket but does not hold the private key can therefore not make any reader load their file.

The private key is a secret of the training side only (an Airflow connection, see
`cross_sell_airflow.hooks.manifest_signer`); readers get the public key file named by
CROSS_SELL_SIGNING_PUBLIC_KEY. `python -m cross_sell keygen DIR` makes a pair.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import NotRetryable

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY_ENV = "CROSS_SELL_SIGNING_PUBLIC_KEY"


class SignatureError(NotRetryable):
    """A manifest whose signature is missing, malformed or not made by the expected key."""


def _check_key(pem: bytes, private: bool, password: str | None = None) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = (serialization.load_pem_private_key(pem, password.encode() if password else None) if private
               else serialization.load_pem_public_key(pem))
    except (ValueError, TypeError) as error:
        raise SignatureError(f"not a PEM {'private' if private else 'public'} key: {error}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        raise SignatureError(f"model-signing needs an elliptic-curve key, not {type(key).__name__}")


def _signing_config(private_key_pem: bytes, password: str | None):
    """model-signing's configuration for this key. It reads the key from a path once, when configured:
    the path given is a pipe's read end (`/dev/fd/N`), so the key never touches a disk, even if the
    process is killed while signing."""
    from model_signing import signing

    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as writer:  # a PEM key is far smaller than a pipe's buffer
            writer.write(private_key_pem)
        return signing.Config().use_elliptic_key_signer(private_key=f"/dev/fd/{read_end}", password=password)
    finally:
        os.close(read_end)


class ManifestSigner:
    """Signs manifests with a private key (training side only); the key stays in this process's memory."""

    def __init__(self, private_key_pem: bytes, password: str | None = None):
        _check_key(private_key_pem, private=True, password=password)
        self._config = _signing_config(private_key_pem, password)

    @classmethod
    def from_file(cls, path: str | os.PathLike, password: str | None = None) -> "ManifestSigner":
        return cls(Path(path).read_bytes(), password)

    def sign(self, manifest: bytes) -> bytes:
        """The Sigstore bundle (JSON bytes) signing these exact bytes (a manifest, a pointer record)."""
        with tempfile.TemporaryDirectory() as tmp:  # only what is signed and the signature: no key
            (Path(tmp) / MANIFEST).write_bytes(manifest)
            self._config.sign(Path(tmp) / MANIFEST, Path(tmp) / SIGNATURE)
            return (Path(tmp) / SIGNATURE).read_bytes()


class ManifestVerifier:
    """Verifies manifests with the public key (every reader)."""

    def __init__(self, public_key_pem: bytes):
        _check_key(public_key_pem, private=False)
        self._pem = public_key_pem

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ManifestVerifier":
        return cls(Path(path).read_bytes())

    @classmethod
    def from_env(cls) -> "ManifestVerifier | None":
        """The verifier for the public key named by CROSS_SELL_SIGNING_PUBLIC_KEY, None when unset."""
        path = os.environ.get(PUBLIC_KEY_ENV)
        return cls.from_file(path) if path else None

    def verify(self, manifest: bytes, signature: bytes | None, what: str) -> None:
        """Raise SignatureError unless `signature` signs exactly `manifest` with this key."""
        from model_signing import verifying

        if not signature:
            raise SignatureError(f"{what} has no signature ({SIGNATURE}); refusing to trust it")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "public.pem").write_bytes(self._pem)
            (Path(tmp) / MANIFEST).write_bytes(manifest)
            (Path(tmp) / SIGNATURE).write_bytes(signature)
            try:
                verifying.Config().use_elliptic_key_verifier(public_key=Path(tmp) / "public.pem").verify(
                    Path(tmp) / MANIFEST, Path(tmp) / SIGNATURE)
            except Exception as error:  # model-signing raises ValueError and parse errors of its own
                raise SignatureError(f"{what}: signature check failed: {type(error).__name__}: "
                                     f"{str(error)[:300]}") from None


def check_pair(signer: ManifestSigner, verifier: ManifestVerifier | None) -> ManifestSigner:
    """`signer`, once a probe it signed verifies with the readers' public key: a pointer or receipt signed
    with another key would be written, then refused by every reader (the service keeps its old model,
    training fails closed), so a mismatched key is refused before anything is written."""
    if verifier is not None:
        probe = b"cross-sell signing key check"
        try:
            verifier.verify(probe, signer.sign(probe), "a probe signed with this key")
        except SignatureError:
            raise SignatureError("the model-signing private key does not match the public key readers verify "
                                 f"with ({PUBLIC_KEY_ENV}); nothing was signed or written") from None
    return signer


def generate_key_pair(directory: str | os.PathLike) -> tuple[Path, Path]:
    """A new P-256 key pair as `signing.key` (PKCS#8, mode 600) and `signing.pub` in `directory`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / "signing.key", directory / "signing.pub"
    private.touch(mode=0o600)
    private.chmod(0o600)
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public

"""A throw-away certificate authority and server certificate for the local stack's TLS listeners.

Made with the ``openssl`` command (Debian's package, installed when missing
and running as root): an EC P-256 CA and a server certificate for
``127.0.0.1``/``localhost`` signed by it, valid for a year. The server's key
and certificate chain go into one PEM file (what Kafka's
``ssl.keystore.type=PEM`` reads); clients trust ``ca.pem``. For tests and
local runs only: a real deployment brings its own PKI.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from meterseg.stack.process import StackError, ensure_debian_package

__all__ = ["TlsFiles", "ensure_tls_files"]

_SERVER_EXTENSIONS = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA certificate, the server's key + certificate chain (one PEM), and each alone are."""

    ca_file: Path
    server_pem: Path
    server_cert: Path
    server_key: Path


def _openssl(openssl: str, *args: str, cwd: Path) -> None:
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"openssl {args[0]} failed:\n{done.stdout}{done.stderr}")


def ensure_tls_files(directory: Path, common_name: str = "meterseg-local") -> TlsFiles:
    """Create the CA and the server certificate in ``directory`` unless they exist; return their paths."""
    files = TlsFiles(
        ca_file=directory / "ca.pem",
        server_pem=directory / "server.pem",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )
    if all(f.exists() for f in (files.ca_file, files.server_pem, files.server_cert, files.server_key)):
        return files
    openssl = ensure_debian_package("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # the keys are not for other local users
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc")
    _openssl(
        openssl, "req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "365",
        "-subj", f"/CN={common_name} CA",
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(openssl, "req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={common_name}",
             cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text(_SERVER_EXTENSIONS)
    _openssl(
        openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "365", "-sha256", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    bundle = b"".join((directory / name).read_bytes() for name in ("server.key", "server.crt", "ca.pem"))
    fd = os.open(files.server_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(bundle)
    for name in ("server.csr", "server.ext", "ca.srl"):
        (directory / name).unlink(missing_ok=True)
    return files

"""``clustertasks tls init``'s CA and server certificate, and the TLS settings of serve."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from clustertasks import errors, settings
from clustertasks.service import certificates


def test_the_server_certificate_is_signed_by_the_ca_for_the_loopback_names(
    tmp_path: Path,
) -> None:
    files = certificates.make_local_ca(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for secret in (files.key, files.ca_key):
        assert secret.stat().st_mode & 0o777 == 0o600

    with pytest.raises(errors.ConfigurationError, match="--force"):
        certificates.make_local_ca(tmp_path / "tls")
    before = files.ca.read_bytes()
    certificates.make_local_ca(tmp_path / "tls", overwrite=True)
    assert files.ca.read_bytes() != before


def test_tls_settings_need_both_files_and_both_must_exist(tmp_path: Path) -> None:
    files = certificates.make_local_ca(tmp_path)
    assert settings.ServerSettings().scheme == "http"
    both = settings.ServerSettings(tls_cert=str(files.cert), tls_key=str(files.key))
    assert both.scheme == "https"
    with pytest.raises(errors.ConfigurationError, match="--tls-key"):
        settings.ServerSettings(tls_cert=str(files.cert))
    with pytest.raises(errors.ConfigurationError, match="not a readable file"):
        settings.ServerSettings(tls_cert=str(files.cert), tls_key=str(tmp_path / "none.pem"))

"""doctor/tls.py without the network: chains as a server might send them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509

from hatchway.doctor import tls
from tests.certs import PrivateCA

NOW = dt.datetime.now(dt.UTC)


def load(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_chain_order(tmp_path: Path) -> None:
    root = PrivateCA(tmp_path / "root", "Root")
    issuing = root.intermediate("Issuing")
    leaf = load(issuing.issue(["a.example"]).cert)[0]
    assert tls.chain_order_problem([leaf, issuing.cert, root.cert]) is None
    assert tls.chain_order_problem([leaf]) is None
    problem = tls.chain_order_problem([leaf, root.cert, issuing.cert])
    assert problem is not None and "not by its issuer CN=Issuing (it is certificate 3)" in problem
    problem = tls.chain_order_problem([root.cert, leaf])
    assert problem is not None and "self-issued but not last" in problem


def test_names_covered_falls_back_to_the_common_name(tmp_path: Path) -> None:
    root = PrivateCA(tmp_path, "Root")
    assert tls.names_covered(root.cert) == ["Root"]
    leaf = load(root.issue(["a.example", "10.0.0.1"]).cert)[0]
    assert tls.names_covered(leaf) == ["a.example", "10.0.0.1"]


def test_a_failure_without_a_chain_keeps_openssls_words() -> None:
    cause, evidence = tls.verify_failure(99, "something new", [], "h", NOW, "the bundle")
    assert cause == "tls.untrusted_issuer"
    assert "something new" in evidence


def test_the_expired_certificate_of_the_chain_is_named(tmp_path: Path) -> None:
    root = PrivateCA(tmp_path / "root", "Root")
    issuing = root.intermediate("Issuing")
    leaf = load(issuing.issue(["a.example"]).cert)[0]
    later = NOW + dt.timedelta(days=20)  # past the leaf's 7 days, within the CAs' 30
    cause, evidence = tls.verify_failure(
        tls.EXPIRED, "certificate has expired", [leaf, issuing.cert], "a.example", later, "b"
    )
    assert cause == "tls.expired"
    assert evidence.startswith("CN=a.example expired at")

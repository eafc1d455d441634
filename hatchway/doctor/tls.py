"""Why a certificate chain fails, in doctor's causes. No I/O: the caller hands in what the
TLS handshake saw (OpenSSL's verify code, the chain as the server sent it) and the time.

OpenSSL tells the first thing wrong but not always which of two look-alikes it is: a
server that leaves out its intermediate and one whose CA is simply unknown both give
"unable to get local issuer certificate". A leaf that names where its issuer is
published (Authority Information Access) comes from a CA with intermediates, so its
missing issuer is the server's fault (incomplete chain); otherwise the issuer is one this
machine does not trust.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

# OpenSSL's X509_V_ERR_* codes that doctor tells apart.
NOT_YET_VALID = 9
EXPIRED = 10
DEPTH_ZERO_SELF_SIGNED = 18
SELF_SIGNED_IN_CHAIN = 19
UNABLE_TO_GET_ISSUER_LOCALLY = 20
UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
UNABLE_TO_GET_ISSUER = 2
HOSTNAME_MISMATCH = 62
IP_ADDRESS_MISMATCH = 64


def name_of(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(no subject)"


def _issuer_of(cert: x509.Certificate) -> str:
    return cert.issuer.rfc4514_string() or "(no issuer)"


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def names_covered(cert: x509.Certificate) -> list[str]:
    """The DNS names and addresses a certificate is for (the CN when it has no SAN)."""
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    dns = [str(name) for name in alt.get_values_for_type(x509.DNSName)]
    return dns + [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)]


def _is_self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _ca_issuers_url(cert: x509.Certificate) -> str | None:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return None
    for description in aia.value:
        if description.access_method == AuthorityInformationAccessOID.CA_ISSUERS:
            return str(description.access_location.value)
    return None


def chain_order_problem(chain: Sequence[x509.Certificate]) -> str | None:
    """Why the chain as sent is out of order (each certificate must be followed by its
    issuer), or None when it is in order."""
    for index, cert in enumerate(chain[:-1]):
        following = chain[index + 1]
        if following.subject != cert.issuer:
            if _is_self_issued(cert):
                return f"certificate {index + 1} ({name_of(cert)}) is self-issued but not last"
            elsewhere = [i for i, c in enumerate(chain) if c.subject == cert.issuer]
            where = f"it is certificate {elsewhere[0] + 1}" if elsewhere else "it is not sent"
            return (
                f"certificate {index + 1} ({name_of(cert)}) is followed by "
                f"{name_of(following)}, not by its issuer {_issuer_of(cert)} ({where})"
            )
    return None


def _dates_problem(chain: Sequence[x509.Certificate], now: dt.datetime) -> tuple[str, str] | None:
    for cert in chain:
        if cert.not_valid_after_utc < now:
            return "tls.expired", (
                f"{name_of(cert)} expired at {_stamp(cert.not_valid_after_utc)} (now {_stamp(now)})"
            )
        if cert.not_valid_before_utc > now:
            return "tls.not_yet_valid", (
                f"{name_of(cert)} is valid only from {_stamp(cert.not_valid_before_utc)} "
                f"(now {_stamp(now)})"
            )
    return None


def _top_of_path(chain: Sequence[x509.Certificate]) -> x509.Certificate:
    """Follow issuers from the leaf through what the server sent, in any order."""
    by_subject = {cert.subject: cert for cert in chain}
    cert = chain[0]
    for _ in range(len(chain)):
        issuer = by_subject.get(cert.issuer)
        if issuer is None or issuer is cert:
            break
        cert = issuer
    return cert


def verify_failure(
    code: int,
    message: str,
    chain: Sequence[x509.Certificate],
    host: str,
    now: dt.datetime,
    bundle: str,
) -> tuple[str, str]:
    """(cause, evidence) for a failed verification. ``chain`` is the server's chain as
    sent (possibly empty if it could not be read); ``bundle`` names what was trusted."""
    if not chain:
        return "tls.untrusted_issuer", f"certificate verify failed: {message}"
    leaf = chain[0]
    if code in (HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH):
        covered = ", ".join(names_covered(leaf)) or "no names"
        return "tls.hostname_mismatch", (
            f"the certificate {name_of(leaf)} covers {covered}, not {host!r}"
        )
    if code in (EXPIRED, NOT_YET_VALID):
        dates = _dates_problem(chain, now)
        if dates is not None:
            return dates
        cause = "tls.expired" if code == EXPIRED else "tls.not_yet_valid"
        return cause, f"certificate verify failed: {message}"
    if code == DEPTH_ZERO_SELF_SIGNED or (len(chain) == 1 and _is_self_issued(leaf)):
        return "tls.self_signed", (
            f"the server's certificate {name_of(leaf)} is self-signed, and {bundle} "
            "does not hold it"
        )
    top = _top_of_path(chain)
    if code == SELF_SIGNED_IN_CHAIN or _is_self_issued(top):
        return "tls.untrusted_issuer", (
            f"the chain ends at {name_of(top)}, a root that {bundle} does not hold"
        )
    if code in (
        UNABLE_TO_GET_ISSUER_LOCALLY,
        UNABLE_TO_GET_ISSUER,
        UNABLE_TO_VERIFY_LEAF_SIGNATURE,
    ):
        url = _ca_issuers_url(top)
        sent = f"the server sent {len(chain)} certificate{'s' if len(chain) > 1 else ''}"
        if url is not None:
            return "tls.incomplete_chain", (
                f"{sent}; the issuer of {name_of(top)}, {_issuer_of(top)}, is an "
                f"intermediate it did not send (published at {url})"
            )
        return "tls.untrusted_issuer", (
            f"{sent}; {name_of(top)} is issued by {_issuer_of(top)}, which {bundle} does not hold"
        )
    return "tls.untrusted_issuer", f"certificate verify failed: {message}"

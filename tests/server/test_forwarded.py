"""X-Forwarded-* believed only from --trusted-proxies: the pure rules, then the live server
(StreamUrl's base, the console's cookie, Origin check and sign-in throttle)."""

import json
import urllib.request

import pytest
import requests

from hatchway.server.forwarded import (
    client_address,
    forwarded,
    is_trusted,
    parse_trusted_proxies,
)

PROXIES = parse_trusted_proxies("10.0.0.0/8, 192.168.1.5, fd00::/8")


def test_parse_trusted_proxies():
    assert [str(n) for n in PROXIES] == ["10.0.0.0/8", "192.168.1.5/32", "fd00::/8"]
    assert parse_trusted_proxies("") == ()
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address"):
        parse_trusted_proxies("10.0.0.300")


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.1.2.3", True),
        ("192.168.1.5", True),
        ("192.168.1.6", False),
        ("::ffff:10.0.0.1", True),  # an IPv4 peer on a dual-stack socket
        ("fd00::1", True),
        ("fe80::1%eth0", False),
        (None, False),
        ("", False),
        ("not-an-address", False),
    ],
)
def test_is_trusted(peer, trusted):
    assert is_trusted(peer, PROXIES) is trusted


def test_headers_count_only_from_trusted_peers():
    headers = {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "front.example"}
    assert forwarded(headers, "X-Forwarded-Proto", "10.0.0.1", PROXIES) == "https"
    assert forwarded(headers, "X-Forwarded-Proto", "203.0.113.9", PROXIES) is None
    assert forwarded(headers, "X-Forwarded-Host", "10.0.0.1", ()) is None
    assert forwarded({}, "X-Forwarded-Host", "10.0.0.1", PROXIES) is None


def test_the_client_address_is_the_rightmost_untrusted_hop():
    # The client wrote "1.1.1.1" itself; the proxy at 10.0.0.2 appended the real peer.
    assert client_address("10.0.0.2", "1.1.1.1, 203.0.113.7", PROXIES) == "203.0.113.7"
    assert client_address("10.0.0.2", "203.0.113.7, 10.0.0.3", PROXIES) == "203.0.113.7"
    assert client_address("203.0.113.9", "1.1.1.1", PROXIES) == "203.0.113.9"
    assert client_address("10.0.0.2", None, PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", "10.0.0.3", PROXIES) == "10.0.0.3"


def healthz(server, headers):
    request = urllib.request.Request(server.url + "/healthz", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["dataChannelUrl"]


FRONT = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}


def test_stream_urls_ignore_forwarded_headers_from_an_untrusted_peer(server):
    host = server.url.split("://", 1)[1]
    assert healthz(server, FRONT) == f"ws://{host}/v1/data-channel/"
    server.set_config(trusted_proxies=parse_trusted_proxies("127.0.0.0/8"))
    assert healthz(server, FRONT) == "wss://evil.example/v1/data-channel/"


def sign_in(server, body, headers=None):
    return requests.post(
        f"{server.url}/console/api/sign-in", json=body, headers=headers or {}, timeout=30
    )


def test_the_cookie_is_not_secure_for_an_untrusted_forwarded_proto(server):
    key_id, secret = server.admin_keys()
    response = sign_in(
        server,
        {"accessKeyId": key_id, "secretAccessKey": secret},
        {"X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/elsewhere"},
    )
    assert response.ok
    cookie = response.headers["Set-Cookie"]
    assert "Secure" not in cookie and "Path=/console/" in cookie


def test_the_origin_check_compares_the_scheme(server):
    key_id, secret = server.admin_keys()
    body = {"accessKeyId": key_id, "secretAccessKey": secret}
    host = server.url.split("://", 1)[1]
    refused = sign_in(server, body, {"Origin": f"https://{host}"})
    assert refused.status_code == 400
    assert refused.json() == {
        "__type": "AccessDeniedException",
        "message": f"Requests from https://{host} are not accepted.",
    }
    assert sign_in(server, body, {"Origin": f"http://{host}"}).ok
    # A host named by an untrusted X-Forwarded-Host is no way around it.
    spoofed = {"Origin": "http://evil.example", "X-Forwarded-Host": "evil.example"}
    assert sign_in(server, body, spoofed).status_code == 400
    server.set_config(trusted_proxies=parse_trusted_proxies("127.0.0.1"))
    behind_tls = {"Origin": "https://front.example", "X-Forwarded-Proto": "https"}
    behind_tls["X-Forwarded-Host"] = "front.example"
    assert sign_in(server, body, behind_tls).ok


def test_the_public_url_is_an_accepted_origin(server):
    # TLS ends at a proxy the operator named with --public-url, not --trusted-proxies.
    server.set_config(public_url="https://hatchway.example.test")
    key_id, secret = server.admin_keys()
    body = {"accessKeyId": key_id, "secretAccessKey": secret}
    accepted = sign_in(server, body, {"Origin": "https://hatchway.example.test"})
    assert accepted.ok and "Secure" in accepted.headers["Set-Cookie"]
    assert sign_in(server, body, {"Origin": "http://hatchway.example.test"}).status_code == 400


def test_a_spoofed_forwarded_for_does_not_escape_the_sign_in_throttle(server):
    statuses = [
        sign_in(
            server, {"userName": f"u{n}", "password": "x"}, {"X-Forwarded-For": f"198.51.100.{n}"}
        ).status_code
        for n in range(11)
    ]
    assert statuses == [400] * 10 + [429]


@pytest.mark.parametrize("command", ["server", "up"])
def test_a_bad_trusted_proxies_flag_is_refused(tmp_path, command):
    import subprocess
    import sys

    flag = ["--trusted-proxies", "10.0.0.0/8,proxy.example"]
    result = subprocess.run(
        [sys.executable, "-m", "hatchway", command, "--home", str(tmp_path), *flag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "'proxy.example' is not an IP address or CIDR network" in result.stderr

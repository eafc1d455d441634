"""Console sign-in over real HTTP: throttled by address and by user with 429 and
Retry-After, and its scrypt run off the event loop."""

from __future__ import annotations

import threading

import requests

from hatchway.server import console
from tests.server.test_console_api import admin


def with_password(server, name="carol", password="Correct-Horse-9"):
    iam = server.client("iam")
    iam.create_user(UserName=name)
    iam.create_login_profile(UserName=name, Password=password)


def sign_in(server, body):
    return requests.post(f"{server.url}/console/api/sign-in", json=body, timeout=30)


def test_wrong_passwords_for_a_user_are_throttled_with_retry_after(server):
    with_password(server)
    answers = [sign_in(server, {"userName": "carol", "password": f"guess-{n}"}) for n in range(6)]
    assert [a.status_code for a in answers] == [400] * 5 + [429]
    refused = answers[-1]
    assert refused.json() == {
        "__type": "ThrottlingException",
        "message": "Too many failed sign-ins: try again later.",
    }
    assert 0 < int(refused.headers["Retry-After"]) <= 30
    # While held back, even the right password is not checked.
    right = sign_in(server, {"userName": "carol", "password": "Correct-Horse-9"})
    assert right.status_code == 429
    # Other users are not held back by carol's failures (the address has budget left).
    with_password(server, "dave", "Battery-Staple-7")
    assert sign_in(server, {"userName": "dave", "password": "Battery-Staple-7"}).ok


def test_one_address_is_throttled_across_users(server):
    statuses = [
        sign_in(server, {"userName": f"nobody{n}", "password": "x"}).status_code for n in range(11)
    ]
    assert statuses == [400] * 10 + [429]
    key_id, secret = server.admin_keys()
    throttled = sign_in(server, {"accessKeyId": key_id, "secretAccessKey": secret})
    assert throttled.status_code == 429


def test_wrong_secrets_for_an_access_key_are_throttled(server):
    key_id, _ = server.admin_keys()
    statuses = [
        sign_in(server, {"accessKeyId": key_id, "secretAccessKey": "wrong"}).status_code
        for _ in range(6)
    ]
    assert statuses == [400] * 5 + [429]


def test_a_success_clears_the_users_failures(server):
    with_password(server)
    for n in range(4):
        assert sign_in(server, {"userName": "carol", "password": f"typo-{n}"}).status_code == 400
    assert sign_in(server, {"userName": "carol", "password": "Correct-Horse-9"}).ok
    statuses = [
        sign_in(server, {"userName": "carol", "password": f"again-{n}"}).status_code
        for n in range(5)
    ]
    assert statuses == [400] * 5


def test_scrypt_runs_off_the_event_loop(server, monkeypatch):
    with_password(server)
    threads = []
    real = console.check_password

    def recording(password, stored):
        threads.append(threading.current_thread())
        return real(password, stored)

    monkeypatch.setattr(console, "check_password", recording)
    assert sign_in(server, {"userName": "carol", "password": "Correct-Horse-9"}).ok
    assert sign_in(server, {"userName": "nobody", "password": "x"}).status_code == 400
    assert len(threads) == 2
    assert server.loop is not None
    assert server.loop.thread not in threads
    admin(server)  # key sign-in still works alongside


def test_parallel_guesses_are_bounded_before_any_has_failed(server):
    from concurrent.futures import ThreadPoolExecutor

    def guess(n):
        return sign_in(server, {"userName": f"nobody{n}", "password": "x"}).status_code

    with ThreadPoolExecutor(max_workers=15) as pool:
        statuses = list(pool.map(guess, range(30)))
    assert sorted(statuses) == [400] * 10 + [429] * 20


def test_setting_a_password_hashes_it_off_the_event_loop(server, monkeypatch):
    from hatchway.server.iam import admin as iam_admin

    threads = []
    real = iam_admin.hash_password

    def recording(password):
        threads.append(threading.current_thread())
        return real(password)

    monkeypatch.setattr(iam_admin, "hash_password", recording)
    with_password(server, name="dave")
    server.client("iam").update_login_profile(UserName="dave", Password="Battery-Staple-7")
    assert len(threads) == 2
    assert server.loop is not None
    assert server.loop.thread not in threads
    assert sign_in(server, {"userName": "dave", "password": "Battery-Staple-7"}).ok

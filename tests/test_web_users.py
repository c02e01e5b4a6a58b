"""Staff users, setup code and API tokens: hashing, the file store, the CLI-facing functions."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from appliance.web.users import (
    CredentialError,
    SetupError,
    UserStore,
    create_token,
    hash_secret,
    list_tokens,
    revoke_token,
    setup_code,
    verify_secret,
)


def test_scrypt_hashes_are_salted_and_checked() -> None:
    first, second = hash_secret("482913"), hash_secret("482913")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_secret("482913", first) and verify_secret("482913", second)
    assert not verify_secret("482914", first)
    assert not verify_secret("482913", None)
    assert not verify_secret("482913", "md5$nope")


def test_setup_code_is_one_time_and_stored_hashed(tmp_path: Path) -> None:
    code = setup_code(tmp_path)
    assert len(code) == 14 and code.count("-") == 2
    store = UserStore(tmp_path)
    stored = store.path.read_text()
    assert code not in stored and code.replace("-", "") not in stored
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    newer = setup_code(tmp_path)  # a new code replaces the old one
    with pytest.raises(SetupError):
        store.complete_setup(code, "boss", "a long password")
    with pytest.raises(CredentialError):
        store.complete_setup(newer, "boss", "short")
    admin = store.complete_setup(newer.lower(), "boss", "a long password")
    assert admin.role == "admin" and not store.needs_setup()
    with pytest.raises(SetupError):
        store.complete_setup(newer, "other", "a long password")
    with pytest.raises(SetupError):
        setup_code(tmp_path)


def test_users_and_roles(tmp_path: Path) -> None:
    store = UserStore(tmp_path)
    store.add_user("boss", "admin", "a long password")
    store.add_user("olga", "operator", "482913")
    with pytest.raises(CredentialError):
        store.add_user("olga", "operator", "123456")  # taken
    with pytest.raises(CredentialError):
        store.add_user("Bad Name", "operator", "123456")
    with pytest.raises(CredentialError):
        store.add_user("root", "superuser", "a long password")
    with pytest.raises(CredentialError):
        store.add_user("kim", "admin", "short pin")  # admins need 10 characters
    assert store.verify_login("olga", "482913") is not None
    assert store.verify_login("olga", "000000") is None
    assert store.verify_login("nobody", "482913") is None
    store.set_secret("olga", "654321")
    assert store.verify_login("olga", "654321") is not None
    with pytest.raises(CredentialError):
        store.remove_user("boss")  # the last admin stays
    store.remove_user("olga")
    assert [u.username for u in store.users()] == ["boss"]


def test_tokens_through_the_cli_functions(tmp_path: Path) -> None:
    token = create_token(tmp_path, "operator", "  lightroom   plugin ")
    assert token.startswith("stk_") and len(token) > 40
    assert token not in UserStore(tmp_path).path.read_text()  # only its hash is kept
    [record] = list_tokens(tmp_path)
    assert (record.name, record.role) == ("lightroom plugin", "operator")
    store = UserStore(tmp_path)
    assert store.token_for(token) == record
    assert store.token_for(token + "x") is None and store.token_for("garbage") is None
    assert revoke_token(tmp_path, record.token_id) is True
    assert revoke_token(tmp_path, record.token_id) is False
    assert store.token_for(token) is None
    with pytest.raises(CredentialError):
        create_token(tmp_path, "god", "x")


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    def add(index: int) -> None:
        UserStore(tmp_path).create_token("operator", f"client {index}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list_tokens(tmp_path)) == 8

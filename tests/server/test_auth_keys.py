import pytest

from stt.server.auth import (
    Authenticator,
    KeyFileError,
    digest,
    extract_token,
    hashed_line,
    new_key,
    parse_key_file,
)


def test_plain_keys_are_stored_hashed_and_identified_by_label() -> None:
    auth = Authenticator.from_settings("alpha, beta,,", None)
    assert auth.enabled and len(auth) == 2
    assert auth.identify("alpha") == "key1"
    assert auth.identify("beta") == "key2"
    assert "alpha" not in repr(vars(auth))


@pytest.mark.parametrize(
    "guess",
    ["", "alph", "alphaa", "ALPHA", "alpha ", " alpha", "alpha\x00", "bet", "a" * 10_000, "\udcff"],
)
def test_near_misses_are_rejected(guess: str) -> None:
    auth = Authenticator.from_settings("alpha,beta", None)
    assert auth.identify(guess) is None


def test_no_token_is_rejected_and_no_keys_means_off() -> None:
    assert Authenticator.from_settings("k", None).identify(None) is None
    assert not Authenticator.from_settings(None, None).enabled
    assert not Authenticator.from_settings(" , ", None).enabled


def test_hashed_key_file(tmp_path: object) -> None:
    from pathlib import Path

    key = new_key()
    assert key.startswith("stt_") and len(key) > 40
    path = Path(str(tmp_path)) / "keys"
    path.write_text(f"# team keys\n{hashed_line(key, 'alice')}\n\n{hashed_line('other')}  # no label\n")
    auth = Authenticator.from_settings("plain", str(path))
    assert auth.identify(key) == "alice"
    assert auth.identify("other") == "line4"
    assert auth.identify("plain") == "key1"
    assert auth.identify(digest(key)) is None  # the stored digest is not itself a key


@pytest.mark.parametrize(
    "line",
    ["alice", "alice sha256:abc", "sha256:" + "z" * 64, "a b sha256:" + "0" * 64, "md5:" + "0" * 64],
)
def test_bad_key_file_lines_say_which(line: str) -> None:
    with pytest.raises(KeyFileError, match="line 2"):
        parse_key_file("# header\n" + line)


def test_token_locations() -> None:
    assert extract_token({"authorization": "Bearer abc"}, {}) == "abc"
    assert extract_token({"authorization": "bearer  abc "}, {}) == "abc"
    assert extract_token({"kyutai-api-key": "k"}, {}) == "k"
    assert extract_token({}, {"token": "q"}) == "q"
    assert extract_token({"authorization": "Bearer a", "kyutai-api-key": "b"}, {"token": "c"}) == "a"


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"authorization": "Basic YWxwaGE6"}, {}),
        ({"authorization": "Token alpha"}, {}),
        ({"authorization": "alpha"}, {}),
        ({"x-api-key": "alpha"}, {}),
        ({"cookie": "token=alpha"}, {}),
        ({}, {"api_key": "alpha"}),
    ],
)
def test_tokens_in_the_wrong_place_do_not_count(headers: dict[str, str], query: dict[str, str]) -> None:
    auth = Authenticator.from_settings("alpha", None)
    assert auth.identify(extract_token(headers, query)) is None

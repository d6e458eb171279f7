"""How the client commands choose their endpoint and key, and the profile file's text."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from clustertasks import errors
from clustertasks.cli import config

PROFILES = {
    "default": {
        "endpoint": "http://profile:1",
        "access_key_id": "profile-ak",
        "access_key_secret": "profile-secret",
    },
    "ci": {"endpoint": "https://ci.example"},
}


def test_a_flag_or_variable_beats_the_profile_which_beats_the_default() -> None:
    from_profile = config.resolve(config.ClientFlags(), PROFILES)
    assert (from_profile.endpoint, from_profile.access_key_id) == ("http://profile:1", "profile-ak")
    assert from_profile.access_key_secret == "profile-secret"

    flagged = config.resolve(
        config.ClientFlags(endpoint="http://flag:2", access_key_secret="flag-secret"), PROFILES
    )
    # Each setting separately: the id still comes from the profile.
    assert (flagged.endpoint, flagged.access_key_id, flagged.access_key_secret) == (
        "http://flag:2",
        "profile-ak",
        "flag-secret",
    )

    nothing = config.resolve(config.ClientFlags(), {})
    assert nothing.endpoint == config.DEFAULT_ENDPOINT == "http://127.0.0.1:8080"
    assert (nothing.access_key_id, nothing.access_key_secret) == (None, None)
    assert nothing.profile == "default"


def test_the_credentials_file_is_the_last_resort_for_a_key() -> None:
    saved = ("saved-ak", "saved-secret")
    used = config.resolve(config.ClientFlags(), {}, saved)
    assert (used.access_key_id, used.access_key_secret) == saved
    # Any key setting from elsewhere wins over the whole file.
    profiled = config.resolve(config.ClientFlags(), PROFILES, saved)
    assert profiled.access_key_id == "profile-ak"
    with pytest.raises(errors.ConfigurationError, match="--access-key-secret"):
        config.resolve(config.ClientFlags(access_key_id="only-id"), {}, saved)


def test_a_named_profile_must_exist_and_have_a_sane_name() -> None:
    chosen = config.resolve(config.ClientFlags(profile="ci"), PROFILES)
    assert (chosen.profile, chosen.endpoint, chosen.access_key_id) == (
        "ci",
        "https://ci.example",
        None,
    )
    with pytest.raises(errors.ConfigurationError, match=r"no profile 'prod'.*ci, default"):
        config.resolve(config.ClientFlags(profile="prod"), PROFILES)
    with pytest.raises(errors.ConfigurationError, match="profile name"):
        config.resolve(config.ClientFlags(profile="a b"), PROFILES)


@pytest.mark.parametrize(
    ("given", "endpoint"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://host:1/", "http://host:1"),
        ("HTTPS://ack.example", "HTTPS://ack.example"),
    ],
)
def test_endpoints_are_normalised(given: str, endpoint: str) -> None:
    assert config.normalise_endpoint(given) == endpoint


@pytest.mark.parametrize("given", ["ftp://host", "http://", "://x", "host:port", "http:///x"])
def test_endpoints_other_than_http_are_refused(given: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="endpoint"):
        config.normalise_endpoint(given)


def test_profiles_render_as_toml_that_reads_back_the_same() -> None:
    tricky = {
        "default": {"endpoint": "http://x", "access_key_secret": 'q"uo\\te\n\t\x01\x7fé'},
        "dotted.name": {"access_key_id": ""},
    }
    text = config.render_profiles(tricky)
    assert tomllib.loads(text) == tricky
    assert text.startswith('[default]\nendpoint = "http://x"\n')


def test_the_profile_file_lives_under_xdg_config_home() -> None:
    assert config.config_path({"XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/clustertasks/config.toml")
    # A relative XDG_CONFIG_HOME is invalid by the spec, and ignored.
    assert config.config_path({"XDG_CONFIG_HOME": "rel"}) == (
        Path.home() / ".config" / "clustertasks" / "config.toml"
    )

"""The S3 configuration and its environment loader."""

from __future__ import annotations

import pytest

from sriblob import (
    ConfigurationError,
    Configured,
    Misconfigured,
    S3StoreConfig,
    Unconfigured,
    load_postgres_config_from_env,
    load_s3_config_from_env,
)

P = "CHECKSTACK_SCRIPT_PACKAGES_S3_"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS = "AKIAIOSFODNN7EXAMPLE"
FULL = {
    P + "ENDPOINT": "http://127.0.0.1:9000",
    P + "BUCKET": "packages",
    P + "REGION": "eu-west-1",
    P + "ACCESS_KEY_ID": ACCESS,
    P + "SECRET_ACCESS_KEY": SECRET,
    P + "FORCE_PATH_STYLE": "true",
}


def without(*names: str) -> dict[str, str]:
    """Return FULL without the given suffixes."""
    return {k: v for k, v in FULL.items() if k.removeprefix(P) not in names}


class TestLoader:
    def test_unconfigured(self) -> None:
        """No variables at all is Unconfigured."""
        assert load_s3_config_from_env({}) == Unconfigured()

    def test_empty_strings_count_as_unset(self) -> None:
        """Variables set to empty strings are the same as unset."""
        assert load_s3_config_from_env(dict.fromkeys(FULL, "")) == Unconfigured()

    def test_configured(self) -> None:
        """A complete set gives a Configured config with every value."""
        match load_s3_config_from_env(FULL):
            case Configured(config):
                assert config.endpoint == "http://127.0.0.1:9000"
                assert config.bucket == "packages"
                assert config.region == "eu-west-1"
                assert config.access_key_id == ACCESS
                assert config.secret_access_key == SECRET
                assert config.force_path_style is True
            case other:
                pytest.fail(f"expected Configured, got {other!r}")

    def test_minimal(self) -> None:
        """Bucket and credentials alone suffice; the rest has defaults."""
        result = load_s3_config_from_env(
            without("ENDPOINT", "REGION", "FORCE_PATH_STYLE")
        )

        assert isinstance(result, Configured)
        assert result.config.endpoint is None
        assert result.config.region is None
        assert result.config.force_path_style is False

    def test_reads_os_environ_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an explicit mapping, os.environ is read."""
        for name, value in FULL.items():
            monkeypatch.setenv(name, value)

        assert isinstance(load_s3_config_from_env(), Configured)

    def test_custom_prefix(self) -> None:
        """The variable prefix is configurable."""
        env = {k.replace(P, "MY_S3_"): v for k, v in FULL.items()}

        assert isinstance(load_s3_config_from_env(env, prefix="MY_S3_"), Configured)
        assert load_s3_config_from_env(env) == Unconfigured()

    def test_partial_is_misconfigured_naming_every_missing_field(self) -> None:
        """A partial set names each missing field and is never Unconfigured."""
        result = load_s3_config_from_env({P + "BUCKET": "b"})

        assert isinstance(result, Misconfigured)
        assert result.error.fields == ("access_key_id", "secret_access_key")
        assert (
            f"{P}ACCESS_KEY_ID and {P}SECRET_ACCESS_KEY are not set: set them"
        ) in str(result.error)

    def test_only_a_secret_never_leaks_it(self) -> None:
        """A lone secret is Misconfigured and the secret is in no message or repr."""
        result = load_s3_config_from_env({P + "SECRET_ACCESS_KEY": SECRET})

        assert isinstance(result, Misconfigured)
        assert result.error.fields == ("bucket", "access_key_id")
        assert SECRET not in str(result.error)
        assert SECRET not in repr(result)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("true", True),
            ("TRUE", True),
            ("1", True),
            ("yes", True),
            ("Yes", True),
            ("false", False),
            ("False", False),
            ("0", False),
            ("no", False),
            ("NO", False),
        ],
    )
    def test_force_path_style_values(self, value: str, expected: bool) -> None:
        """FORCE_PATH_STYLE takes true/false/1/0/yes/no in any case."""
        result = load_s3_config_from_env({**FULL, P + "FORCE_PATH_STYLE": value})

        assert isinstance(result, Configured)
        assert result.config.force_path_style is expected

    @pytest.mark.parametrize("value", ["maybe", "on", "2", "tru"])
    def test_force_path_style_garbage_is_misconfigured(self, value: str) -> None:
        """Anything else is an error, never a silent false."""
        result = load_s3_config_from_env({**FULL, P + "FORCE_PATH_STYLE": value})

        assert isinstance(result, Misconfigured)
        assert result.error.fields == ("force_path_style",)

    @pytest.mark.parametrize(
        "endpoint",
        [
            "localhost:9000",
            "ftp://example.com",
            "http://",
            "http://user:pass@example.com",
            "http://example.com:notaport",
        ],
    )
    def test_bad_endpoint(self, endpoint: str) -> None:
        """An endpoint must be an http(s) URL with a host and no credentials."""
        result = load_s3_config_from_env({**FULL, P + "ENDPOINT": endpoint})

        assert isinstance(result, Misconfigured)
        assert result.error.fields == ("endpoint",)
        assert "pass" not in str(result.error)

    def test_missing_and_invalid_together(self) -> None:
        """Missing and invalid fields are all named at once, in field order."""
        result = load_s3_config_from_env(
            {P + "ENDPOINT": "nope", P + "FORCE_PATH_STYLE": "perhaps"}
        )

        assert isinstance(result, Misconfigured)
        assert result.error.fields == (
            "bucket",
            "access_key_id",
            "secret_access_key",
            "endpoint",
            "force_path_style",
        )
        message = str(result.error)
        assert (
            f"{P}BUCKET, {P}ACCESS_KEY_ID and {P}SECRET_ACCESS_KEY are not set"
        ) in message
        assert f"{P}ENDPOINT must be an http:// or https:// URL" in message
        assert f"{P}FORCE_PATH_STYLE must be true, false, 1, 0, yes or no" in message
        assert "nope" not in message
        assert "perhaps" not in message


class TestTypos:
    """A misspelt variable under a backend's prefix is an error, never ignored."""

    def test_a_misspelt_optional_setting_is_misconfigured(self) -> None:
        """ENDPONT beside a full set: the store would have gone to AWS instead."""
        env = without("ENDPOINT") | {P + "ENDPONT": "http://127.0.0.1:9000"}

        result = load_s3_config_from_env(env)

        assert isinstance(result, Misconfigured)
        assert result.error.fields == ("endpoint",)
        message = str(result.error)
        assert f"unknown variable {P}ENDPONT (did you mean {P}ENDPOINT?)" in message
        assert "127.0.0.1" not in message
        assert SECRET not in message

    def test_a_lone_misspelt_variable_is_not_unconfigured(self) -> None:
        """One typo and nothing else: Misconfigured, so writes are refused."""
        result = load_s3_config_from_env({P + "BUKCET": "packages"})

        assert isinstance(result, Misconfigured)
        assert result.error.fields == ("bucket", "access_key_id", "secret_access_key")
        assert f"(did you mean {P}BUCKET?)" in str(result.error)
        assert "packages" not in str(result.error)

    def test_an_unknown_name_far_from_every_setting(self) -> None:
        """No guess is offered, but the name is still refused."""
        result = load_s3_config_from_env(FULL | {P + "SESSION_TOKEN": SECRET})

        assert isinstance(result, Misconfigured)
        assert f"unknown variable {P}SESSION_TOKEN: unset it" in str(result.error)
        assert "did you mean" not in str(result.error)
        assert SECRET not in str(result.error)

    def test_empty_and_other_prefixes_are_ignored(self) -> None:
        """An empty unknown variable counts as unset; other programs' are theirs."""
        env = FULL | {P + "BUKCET": " ", "CHECKSTACK_OTHER_PLUGIN_URL": "x"}

        assert isinstance(load_s3_config_from_env(env), Configured)

    def test_postgres_typos_too(self) -> None:
        """The PostgreSQL loader refuses its prefix's unknown names the same way."""
        result = load_postgres_config_from_env(
            {
                "SRIBLOB_POSTGRES_DSN": "postgresql://h/db",
                "SRIBLOB_POSTGRES_SCHEME": "x",
            }
        )

        assert isinstance(result, Misconfigured)
        assert result.error.fields == ("schema",)
        assert "did you mean SRIBLOB_POSTGRES_SCHEMA?" in str(result.error)


class TestConfig:
    def test_repr_hides_credentials(self) -> None:
        """Neither credential appears in repr() or str()."""
        config = S3StoreConfig(
            bucket="b", access_key_id=ACCESS, secret_access_key=SECRET
        )

        for text in (repr(config), str(config), repr(Configured(config))):
            assert SECRET not in text
            assert ACCESS not in text
            assert "bucket='b'" in text

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("bucket", ""),
            ("access_key_id", " "),
            ("part_size", 1024),
            ("part_size", True),
            ("list_page_size", 0),
            ("list_page_size", 1001),
            ("max_concurrency", 0),
            ("connect_timeout", -1),
            ("checksum_mode", "always"),
            ("force_path_style", "yes"),
            ("sign_payloads", "no"),
            ("max_attempts", 0),
            ("max_concurrency", 257),
            ("read_timeout", "fast"),
            ("multipart_threshold", -1),
            ("region", ""),
            ("endpoint", "127.0.0.1:9000"),
            ("endpoint", f"http://user:{SECRET}@127.0.0.1"),
            ("key_prefix", "script-packages/blobs"),
            ("key_prefix", "/script-packages/blobs/"),
            ("key_prefix", "x" * 834 + "/"),
            ("key_prefix", "\ud800/"),
            ("key_prefix", None),
        ],
    )
    def test_invalid_values(self, field: str, value: object) -> None:
        """Invalid values raise ConfigurationError naming the field."""
        options: dict[str, object] = {
            "bucket": "b",
            "access_key_id": ACCESS,
            "secret_access_key": SECRET,
            field: value,
        }

        with pytest.raises(ConfigurationError, match=field) as excinfo:
            S3StoreConfig(**options)  # type: ignore[arg-type]

        assert excinfo.value.fields == (field,)
        assert SECRET not in str(excinfo.value)

    @pytest.mark.parametrize(
        "prefix", ["", "blobs/", "tenant-a/blobs/", "é" * 416 + "/"]
    )
    def test_key_prefixes(self, prefix: str) -> None:
        """The bucket's root and any path ending with '/' are valid prefixes."""
        config = S3StoreConfig(
            bucket="b", access_key_id="a", secret_access_key="s", key_prefix=prefix
        )

        assert config.key_prefix == prefix

    def test_defaults(self) -> None:
        """Tuning fields default to sane values."""
        config = S3StoreConfig(bucket="b", access_key_id="a", secret_access_key="s")

        assert config.key_prefix == "script-packages/blobs/"
        assert config.part_size >= 5 * 1024 * 1024
        assert config.multipart_threshold >= config.part_size
        assert config.checksum_mode == "when_required"
        assert config.sign_payloads is None

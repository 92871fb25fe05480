"""Redactor and mask_url: secrets never reach the telemetry store or a log line."""

from __future__ import annotations

import time

import pytest

from forewarn.errors import ConfigurationError
from forewarn.redaction import MASK, TRUNCATION_MARKER, Redactor, mask_url
from forewarn.settings import DEFAULT_REDACT_PATTERNS, ForewarnSettings


@pytest.fixture
def redactor() -> Redactor:
    return Redactor()


class TestDefaultPatterns:
    """The default patterns mask passwords, tokens, URL credentials, card numbers and e-mails."""

    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            ("login failed: password=hunter2", "login failed: password=***"),
            ("PASSWORD = hunter2 rejected", "PASSWORD = *** rejected"),
            ("pwd:abc passwd: def", "pwd:*** passwd: ***"),
            ("secret=s3 token: t0k", "secret=*** token: ***"),
            ("api_key=AKIA123 api-key=x apikey:y", "api_key=*** api-key=*** apikey:***"),
        ],
    )
    def test_key_value_keeps_key_and_separator(self, redactor: Redactor, message: str, expected: str) -> None:
        """key=value secrets keep the key and separator and lose the value."""
        assert redactor.redact(message) == expected

    @pytest.mark.parametrize(
        "message",
        [
            "upstream said: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "header bearer abc-DEF_123~+/=",
        ],
    )
    def test_bearer_tokens(self, redactor: Redactor, message: str) -> None:
        """Bearer tokens are masked together with the word Bearer."""
        redacted = redactor.redact(message)
        assert redacted is not None
        assert redacted.endswith(": ***") or redacted.endswith(" ***")
        assert "eyJ" not in redacted and "abc-DEF" not in redacted

    def test_authorization_header_loses_whole_token(self, redactor: Redactor) -> None:
        """'Authorization: Bearer x' masks the token, not just the word Bearer."""
        assert redactor.redact("Authorization: Bearer abc.def-ghi sent") == "Authorization: *** sent"

    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            (
                "could not connect to postgresql+psycopg://forewarn:s3cret@db.internal:5432/telemetry",
                "could not connect to postgresql+psycopg://***@db.internal:5432/telemetry",
            ),
            ("GET https://bob:pa55@api.example.com/v1 failed", "GET https://***@api.example.com/v1 failed"),
        ],
    )
    def test_url_credentials(self, redactor: Redactor, message: str, expected: str) -> None:
        """user:password in a URL is masked and the host is kept."""
        assert redactor.redact(message) == expected

    @pytest.mark.parametrize(
        "card", ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005"]
    )
    def test_card_numbers(self, redactor: Redactor, card: str) -> None:
        """13-19 digit card numbers, grouped or not, are masked."""
        assert redactor.redact(f"card {card} declined") == "card *** declined"

    def test_short_numbers_survive(self, redactor: Redactor) -> None:
        """Ordinary numbers (ids, ports, counts) are not card numbers."""
        assert redactor.redact("order 12345 failed after 3 tries on port 5432") == (
            "order 12345 failed after 3 tries on port 5432"
        )

    @pytest.mark.parametrize("email", ["alice@example.com", "a.b+tag@mail.example.co.uk", "x_y-z@sub-domain.io"])
    def test_emails(self, redactor: Redactor, email: str) -> None:
        """E-mail addresses are masked."""
        assert redactor.redact(f"no user {email} found") == "no user *** found"

    def test_several_secrets_in_one_message(self, redactor: Redactor) -> None:
        """Every secret in a message is masked, each by its own ***."""
        message = "user bob@example.com token=abc card 4111 1111 1111 1111 via https://u:p@h.example.com"
        assert redactor.redact(message) == "user *** token=*** card *** via https://***@h.example.com"

    def test_clean_message_is_unchanged(self, redactor: Redactor) -> None:
        """A message without secrets comes back as it was."""
        message = "ConnectionError: [Errno 111] Connection refused"
        assert redactor.redact(message) == message

    def test_defaults_are_the_settings_defaults(self, redactor: Redactor) -> None:
        """Without arguments the patterns are DEFAULT_REDACT_PATTERNS and the limit 500."""
        assert redactor.patterns == DEFAULT_REDACT_PATTERNS
        assert redactor.max_chars == 500


class TestCustomPatterns:
    """Custom patterns mask their whole match, or only group 3 when they have three groups."""

    def test_whole_match(self) -> None:
        """A pattern without three groups masks its whole match."""
        redactor = Redactor(patterns=[r"sk-[A-Za-z0-9]+", r"(ghp)_\w+"])
        assert redactor.redact("keys sk-live123 and ghp_abc") == "keys *** and ***"

    def test_three_groups_keep_the_first_two(self) -> None:
        """With three groups only group 3 is masked; text around it stays."""
        redactor = Redactor(patterns=[r"(user)(\s+)(\w+)!"])
        assert redactor.redact("hello user alice!") == "hello user ***!"

    def test_other_group_counts_mask_everything(self) -> None:
        """Patterns with one, two or four groups mask their whole match."""
        redactor = Redactor(patterns=[r"(user)(\s+)(\w+)(!)", r"(k)(=)\d"])
        assert redactor.redact("hello user alice! k=1") == "hello *** ***"

    def test_optional_third_group_missing(self) -> None:
        """If group 3 did not take part in the match, the whole match is masked."""
        redactor = Redactor(patterns=[r"(key)(=)(\d+)?"])
        assert redactor.redact("key= and key=42") == "*** and key=***"

    def test_empty_matches_are_ignored(self) -> None:
        """A pattern that can match the empty string does not scatter *** everywhere."""
        assert Redactor(patterns=[r"x*"]).redact("abxxc") == "ab***c"

    def test_no_patterns(self) -> None:
        """An empty list only truncates."""
        assert Redactor(patterns=[], max_chars=5).redact("password=abc") == "pass…"

    def test_overlapping_matches_merge(self) -> None:
        """Overlapping matches of different patterns become one ***."""
        assert Redactor(patterns=[r"bcd", r"abc"]).redact("xabcdx") == "x***x"

    def test_later_match_inside_earlier_mask_is_skipped(self) -> None:
        """A later pattern does not match from the middle of an earlier mask."""
        assert Redactor(patterns=[r"ab", r"bcd"]).redact("abcd") == "***cd"

    @pytest.mark.parametrize("pattern", ["(unclosed", "[z-a]", "*"])
    def test_invalid_regex(self, pattern: str) -> None:
        """An invalid regular expression is a configuration error naming it."""
        with pytest.raises(ConfigurationError) as info:
            Redactor(patterns=[pattern])
        assert info.value.setting == "Redactor.patterns"
        assert info.value.value == pattern

    def test_single_string_is_rejected(self) -> None:
        """A bare string (not a list) would be read character by character: rejected."""
        with pytest.raises(ConfigurationError, match="a list of regular expressions"):
            Redactor(patterns="secret")

    def test_patterns_compiled_once(self) -> None:
        """Patterns are compiled in __init__, not per message."""
        redactor = Redactor(patterns=[r"a+"])
        compiled = redactor._compiled
        redactor.redact("aaa")
        assert redactor._compiled is compiled


class TestTruncation:
    """Long messages are cut to max_chars, the last character being the … marker."""

    def test_short_message_untouched(self) -> None:
        """A message of exactly max_chars is not cut."""
        assert Redactor(patterns=[], max_chars=5).redact("abcde") == "abcde"

    def test_long_message_cut_with_marker(self) -> None:
        """A longer message is cut to exactly max_chars including the marker."""
        redacted = Redactor(patterns=[], max_chars=20).redact("x" * 100)
        assert redacted == "x" * 19 + TRUNCATION_MARKER
        assert len(redacted) == 20

    def test_redaction_happens_before_truncation(self) -> None:
        """A secret straddling the limit is masked, not half-shown."""
        redacted = Redactor(max_chars=30).redact("a" * 20 + " password=hunter2hunter2")
        assert redacted == "a" * 20 + " password…"
        assert "hunter" not in redacted

    def test_huge_message_is_fast(self) -> None:
        """A megabyte-long blob is handled quickly (matching stops past max_chars)."""
        blob = "a" * 1_000_000
        start = time.perf_counter()
        redacted = Redactor().redact(blob)
        # generous: the default patterns are linear, so only a scan of the whole blob many times over fails this
        assert time.perf_counter() - start < 10.0
        assert redacted == "a" * 499 + "…"

    def test_matching_stops_past_max_chars(self) -> None:
        """A pattern that is quadratic in its input only ever sees about max_chars of a huge message.

        Over the whole megabyte ``a*b`` would take hours; over the scanned head it takes milliseconds, so the
        generous bound tells the two apart on any machine.
        """
        start = time.perf_counter()
        redacted = Redactor([r"a*b"], max_chars=50).redact("a" * 1_000_000)
        assert time.perf_counter() - start < 10.0
        assert redacted == "a" * 49 + "…"

    @pytest.mark.parametrize("max_chars", [0, -1, 2.5, True])
    def test_max_chars_validated(self, max_chars: object) -> None:
        """max_chars must be a whole number >= 1."""
        with pytest.raises(ConfigurationError, match=r"Redactor\.max_chars"):
            Redactor(max_chars=max_chars)  # type: ignore[arg-type]


class TestNoneAndSettings:
    """None passes through; from_settings reads the FOREWARN_* settings."""

    def test_none_passthrough(self, redactor: Redactor) -> None:
        """None stays None (an exception without a message)."""
        assert redactor.redact(None) is None

    def test_empty_string(self, redactor: Redactor) -> None:
        """An empty message stays empty."""
        assert redactor.redact("") == ""

    def test_from_explicit_settings(self) -> None:
        """patterns and max_chars come from the given settings."""
        settings = ForewarnSettings(redact_patterns=[r"tenant-\d+"], message_max_chars=25)
        redactor = Redactor.from_settings(settings)
        assert (redactor.patterns, redactor.max_chars) == ((r"tenant-\d+",), 25)
        assert redactor.redact("tenant-42 over quota, password=x") == "*** over quota, password…"

    def test_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an argument the process settings are used."""
        from forewarn.settings import get_settings

        monkeypatch.setenv("FOREWARN_REDACT_PATTERNS", '["order-\\\\d+"]')
        monkeypatch.setenv("FOREWARN_MESSAGE_MAX_CHARS", "40")
        get_settings.cache_clear()
        redactor = Redactor.from_settings()
        assert redactor.max_chars == 40
        assert redactor.redact("order-7 failed") == f"{MASK} failed"


class TestMaskUrl:
    """mask_url hides the password in a URL and leaves the rest alone."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            (
                "postgresql+psycopg://forewarn:s3cret@db:5432/telemetry",
                "postgresql+psycopg://forewarn:***@db:5432/telemetry",
            ),
            ("postgresql://u:p%40ss@host/db?sslmode=require", "postgresql://u:***@host/db?sslmode=require"),
            ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            ("https://user:pw@example.com/a/b?x=1#frag", "https://user:***@example.com/a/b?x=1#frag"),
            ("postgresql://u:pw@h:notaport/db", "postgresql://u:***@h:notaport/db"),
            ("amqp://guest:guest@rabbit//", "amqp://guest:***@rabbit//"),
        ],
    )
    def test_password_hidden(self, url: str, expected: str) -> None:
        """The password becomes *** whatever the scheme."""
        assert mask_url(url) == expected

    @pytest.mark.parametrize(
        "url",
        [
            "sqlite:///tmp/telemetry.db",
            "sqlite:////abs/path.db",
            "postgresql://u@h/db",
            "https://example.com:8443/path#frag",
            "not a url at all",
            "",
        ],
    )
    def test_no_password_unchanged(self, url: str) -> None:
        """Without a password the URL comes back exactly as given."""
        assert mask_url(url) == url

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            (
                "https://api.example.com/v1?api_key=abc&page=2",
                "https://api.example.com/v1?api_key=***&page=2",
            ),
            ("postgresql://u:pw@h/db?password=zz", "postgresql://u:***@h/db?password=***"),
            (
                "https://x.io/?a=1&access_token=t&Signature=s#f",
                "https://x.io/?a=1&access_token=***&Signature=***",
            ),
        ],
    )
    def test_secret_query_parameters(self, url: str, expected: str) -> None:
        """Secret-looking query parameters are masked too."""
        assert mask_url(url) == expected

    def test_does_not_leak_in_any_form(self) -> None:
        """No trace of the password remains, encoded or not."""
        masked = mask_url("postgresql+psycopg://admin:Sup%3Ar%2Fp%40ss@db.example.com/x")
        assert "Sup" not in masked
        assert masked == "postgresql+psycopg://admin:***@db.example.com/x"

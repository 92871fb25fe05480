"""Secrets never shown or stored: generated secrets inside URLs, messages and parameters never come out.

Every secret is generated (Hypothesis) between two fixed markers, so finding the whole secret in an output
means it leaked, never that it happened to match other text. The outputs checked are the ones an operator
or attacker can read: mask_url, redacted messages, the SQLite store file's bytes, log records (caplog),
and the terminal output of `forewarn info` and `forewarn report`.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import string
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.masking import SECRET_NAME, mask_url, mask_url_secrets, url_secrets
from forewarn.orchestration.log_redaction import LOG_MAX_CHARS, RedactingFilter, install_log_redaction
from forewarn.records import FlowRunRecord, parameters_hash
from forewarn.redaction import MASK, Redactor, redact_parameters
from forewarn.resilience.attempts import AttemptRunner
from forewarn.resilience.retry import RetryPolicy
from forewarn.settings import get_settings, load_settings
from forewarn.store import TelemetryStore

WORD = string.ascii_letters + string.digits


def secrets(specials: str = "", min_size: int = 4) -> st.SearchStrategy[str]:
    """Secrets like ``Zq<letters, digits and specials>9k``: the markers make each one unmistakable."""
    body = st.text(alphabet=st.sampled_from(list(WORD + specials)), min_size=min_size, max_size=24)
    return body.map(lambda text: f"Zq{text}9k")


# what an operator may type into a URL's password unescaped; "@" and "#" are the hard ones
URL_PASSWORD = secrets("/ @#?:!$'*+,;=[]%")
# a query value runs to the next & (as SQLAlchemy reads it), so & cannot be part of one
QUERY_PASSWORD = secrets("/ @#?:!$'*+,;=%")
TOKEN = secrets("/+=._-")  # no whitespace: an unquoted value ends at a space
QUOTABLE = secrets(" /@#:;,!$%&*+=?-")  # anything but quotes, backslashes and newlines


def _clock() -> datetime:
    return datetime(2026, 11, 1, tzinfo=timezone.utc)


class TestMaskUrl:
    """A URL's password is masked whatever it holds, and the rest of the URL is kept."""

    @given(password=URL_PASSWORD)
    def test_userinfo_password_never_survives(self, password: str) -> None:
        """user:PASSWORD@host with /, space, @, #, ? and : unescaped: the password is gone, the host kept."""
        masked = mask_url(f"postgresql+psycopg://forewarn:{password}@db.internal:5432/telemetry")
        assert password not in masked
        assert masked == "postgresql+psycopg://forewarn:***@db.internal:5432/telemetry"

    @given(password=QUERY_PASSWORD, key=st.sampled_from(["password", "sslpassword", "api_key", "token"]))
    def test_query_password_never_survives(self, password: str, key: str) -> None:
        """?password=... (the other place a database URL holds one) is masked up to the next &."""
        masked = mask_url(f"postgresql+psycopg://forewarn@db:5432/telemetry?{key}={password}&sslmode=require")
        assert password not in masked
        if "@" not in password:  # else SQLAlchemy reads "forewarn@db:5432/...?key=Zq" as user:password too
            assert masked.endswith(f"?{key}=***&sslmode=require")

    @given(password=URL_PASSWORD)
    def test_quoted_pieces_of_a_password_are_masked(self, password: str) -> None:
        """What a driver quotes of a password split at its first @ (the 'host') is masked too."""
        url = f"postgresql://forewarn:{password}@127.0.0.1:5432/telemetry"
        host = password.split("@", 1)[-1] + "@127.0.0.1"
        message = mask_url_secrets(f"failed to resolve host '{host}' for {url}", url)
        assert password not in message
        if "@" in password and len(password.rsplit("@", 1)[-1]) >= 3:
            assert password.rsplit("@", 1)[-1] not in message

    def test_url_secrets_of_a_url_without_secrets(self) -> None:
        """A URL without password has nothing to mask; text is left as it was."""
        assert url_secrets("sqlite:////var/lib/forewarn/telemetry.db") == ()
        assert mask_url_secrets("nothing here", None) == "nothing here"

    def test_email_user_name(self) -> None:
        """An unescaped @ in the user name does not leave the password visible."""
        assert mask_url("postgresql://me@corp.com:hunter2@db/t") == "postgresql://me@corp.com:***@db/t"


class TestRedactorForms:
    """Each form the issue lists is masked; the key and the message around it stay readable."""

    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            ('{"password": "hun ter2", "rows": 3}', '{"password": "***", "rows": 3}'),
            (
                '{"client_secret":"abc","api_key": "k-1", "token": "t"}',
                '{"client_secret":"***","api_key": "***", "token": "***"}',
            ),
            ("{'db_password': 'x y', 'n': 1}", "{'db_password': '***', 'n': 1}"),
            ('login: password "p w" rejected', 'login: password "***" rejected'),
            ("login: password 'p w' rejected", "login: password '***' rejected"),
            ("Authorization: Basic dXNlcjpwYXNz retry", "Authorization: *** retry"),
            ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG+bPxRfiCY ok", "aws_secret_access_key=*** ok"),
            ("key AKIAIOSFODNN7EXAMPLE denied", "key *** denied"),
            ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\nbad", "***\nbad"),
            (
                '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n"}',
                '{"private_key": "***"}',
            ),
            ("cut: -----BEGIN RSA PRIVATE KEY-----\nMIIEvQIBADANBg", "cut: ***"),
        ],
    )
    def test_form(self, message: str, expected: str) -> None:
        """JSON keys, quoted passwords, Basic auth, cloud keys and PEM keys lose their values."""
        assert Redactor(max_chars=2000).redact(message) == expected

    @pytest.mark.parametrize(
        "message",
        [
            "password authentication failed for user bob",
            "tokenizer=bpe batch_size=32",
            "ConnectionError: [Errno 111] Connection refused",
        ],
    )
    def test_ordinary_words_survive(self, message: str) -> None:
        """A secret word that is not a key with a value, or a longer name, is left alone."""
        assert Redactor().redact(message) == message

    @given(
        secret=TOKEN,
        template=st.sampled_from(
            [
                "login failed: password={s}",
                "token: {s} expired",
                "GET https://bob:{s}@api.example.com/v1 failed",
                "x-api-key={s}",
                "aws_secret_access_key = {s}",
                "Authorization: Bearer {s}",
                "Authorization: Basic {s} rejected",
                "ValueError('sslpassword={s}')",
            ]
        ),
        before=st.text(alphabet=WORD + " .,:", max_size=40),
    )
    def test_unquoted_secret_never_survives(self, secret: str, template: str, before: str) -> None:
        """An unquoted secret after a key, in a URL or a header is gone, whatever precedes it."""
        redacted = Redactor().redact(before + " " + template.format(s=secret))
        assert redacted is not None and secret not in redacted

    @given(secret=QUOTABLE, key=st.sampled_from(["password", "secret", "token", "api_key", "refresh_token"]))
    def test_json_secret_never_survives(self, secret: str, key: str) -> None:
        """json.dumps of a dict holding a secret (as an error message might quote it) loses the secret."""
        message = "request failed: " + json.dumps({"user": "bob", key: secret, "retry": True})
        redacted = Redactor().redact(message)
        assert redacted is not None and secret not in redacted and '"retry": true' in redacted

    @given(user=st.text(alphabet=WORD, min_size=1, max_size=8), secret=QUOTABLE)
    def test_basic_auth_never_survives(self, user: str, secret: str) -> None:
        """The base64 credentials of a Basic header are masked, and so cannot be decoded back."""
        encoded = base64.b64encode(f"{user}:{secret}".encode()).decode()
        redacted = Redactor().redact(f"401 for header Authorization: Basic {encoded}")
        assert redacted is not None and encoded not in redacted

    def test_huge_json_blob_stays_fast(self) -> None:
        """The key pattern reads a long run of name characters once (no quadratic search for a key)."""
        import time

        start = time.perf_counter()
        Redactor(max_chars=10_000).redact("a-" * 500_000)
        Redactor().mask("password" * 20_000)
        assert time.perf_counter() - start < 5.0


class TestParameters:
    """Flow parameters lose their secrets before they are stored, and the hash is of what is stored."""

    @given(
        secret=QUOTABLE, name=st.sampled_from(["password", "db_password", "API_KEY", "client_secret", "credentials"])
    )
    def test_secret_named_values_are_masked_at_any_depth(self, secret: str, name: str) -> None:
        """A secret-named key's value becomes *** in dicts and lists at any depth, whatever its type."""
        parameters = {"day": "2026-11-01", name: secret, "nested": [{"source": {name: {"raw": secret}}}]}
        redacted = redact_parameters(parameters)
        assert secret not in json.dumps(redacted)
        assert redacted == {"day": "2026-11-01", name: MASK, "nested": [{"source": {name: MASK}}]}
        assert parameters[name] == secret  # the caller's dict is not changed

    @given(secret=URL_PASSWORD)
    def test_secrets_inside_strings_are_masked(self, secret: str) -> None:
        """A URL with a password, in a parameter of any name, keeps its host and loses its password."""
        redacted = redact_parameters({"dsn": f"postgresql://etl:{secret}@warehouse/prod"})
        assert secret not in redacted["dsn"]

    @pytest.mark.parametrize("name", ["batch_size", "tokenizer", "token_count", "passwordless", "day"])
    def test_ordinary_names_are_kept(self, name: str) -> None:
        """Names that only contain a secret word are not secret."""
        assert SECRET_NAME.fullmatch(name) is None
        assert redact_parameters({name: 7}) == {name: 7}

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(secret=QUOTABLE)
    def test_no_secret_in_the_sqlite_file(self, tmp_path: Path, secret: str) -> None:
        """Redacted parameters and a failed attempt's message leave no trace of the secret in the file's bytes."""
        path = tmp_path / f"{abs(hash(secret))}.db"
        store = TelemetryStore(f"sqlite:///{path}")
        parameters = redact_parameters({"user": "etl", "password": secret, "dsn": f"https://u:{secret}@h/x"})
        store.record_flow_run_start(
            FlowRunRecord(
                flow_run_id="run-1",
                flow_name="nightly",
                start_time=_clock(),
                parameters=parameters,
                parameters_hash=parameters_hash(parameters),
            )
        )

        def login() -> None:
            raise PermissionError(f"login refused: {json.dumps({'password': secret})} password='{secret}'")

        runner = AttemptRunner(
            "login",
            RetryPolicy(attempts=2, wait_jitter=0),
            sink=store.record_attempt,
            sleep=lambda s: None,
            clock=_clock,
        )
        with pytest.raises(PermissionError):
            runner.run(login, (), {}, task_run_id="task-1", flow_run_id="run-1")
        store.close()
        assert secret.encode() not in path.read_bytes()
        stored = TelemetryStore(f"sqlite:///{path}").runs()
        assert stored["parameters_hash"].iloc[0] == parameters_hash(parameters)


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host names resolve only on loopback: a "host" made of half a password fails at once, no DNS."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1", None):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


CLI = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class TestCommandLine:
    """`forewarn info` and `forewarn report` never print a password, however it is written."""

    @CLI
    @given(password=URL_PASSWORD)
    def test_info_masks_the_password(self, password: str) -> None:
        """`forewarn info` shows FOREWARN_DB_URL (or the error about it) without the password."""
        get_settings.cache_clear()
        url = f"postgresql+psycopg://forewarn:{password}@127.0.0.1:1/telemetry"
        result = CliRunner().invoke(app, ["info"], env={"FOREWARN_DB_URL": url})
        get_settings.cache_clear()
        assert password not in result.output
        assert "***" in result.output

    @CLI
    @given(password=URL_PASSWORD, query=st.booleans())
    def test_report_on_a_bad_url_masks_the_password(self, loopback_only: None, password: str, query: bool) -> None:
        """The error of `forewarn report --db URL` (unreachable, or unparsable) names the URL masked."""
        if query:
            url = f"postgresql://forewarn@127.0.0.1:1/telemetry?password={password.replace('&', '')}"
            password = password.replace("&", "")
        else:
            url = f"postgresql://forewarn:{password}@127.0.0.1:1/telemetry"
        result = CliRunner().invoke(app, ["report", "--db", url])
        assert result.exit_code == 2
        assert password not in result.output
        for piece in password.split("@"):
            if len(piece) >= 3:
                assert piece not in result.output

    def test_unknown_variable_value_is_masked(self) -> None:
        """A misspelt FOREWARN_DB_URL is named in the error, its password masked."""
        with pytest.raises(Exception, match=r"FOREWARN_DB_ULR") as info:
            load_settings(_environ={"FOREWARN_DB_ULR": "postgresql://u:hunter2@db/t"})
        assert "hunter2" not in str(info.value)


def _fail_like_prefect(logger_name: str, message: str) -> None:
    """Log a failure the way Prefect's task engine does: the exception's repr and its traceback."""
    try:
        raise ValueError(message)
    except ValueError as exc:
        logging.getLogger(logger_name).error(f"Task run failed with exception: {exc!r}", exc_info=True)


@pytest.mark.filterwarnings("ignore:Logger 'prefect:UserWarning")  # no flow run here for the API handler
class TestLogFilter:
    """The filter forewarn installs on Prefect's run loggers masks messages and tracebacks."""

    @pytest.fixture(autouse=True)
    def _remove_filters(self) -> Any:
        yield
        for name in ("prefect.task_runs", "prefect.flow_runs", "forewarn.telemetry"):
            logger = logging.getLogger(name)
            for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
                logger.removeFilter(old)

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(secret=TOKEN, logger_name=st.sampled_from(["prefect.task_runs", "prefect.flow_runs"]))
    def test_no_secret_in_caplog(self, caplog: pytest.LogCaptureFixture, secret: str, logger_name: str) -> None:
        """The secret is in neither the message, the traceback, nor any formatted log line."""
        install_log_redaction()
        caplog.clear()
        with caplog.at_level(logging.ERROR), caplog.at_level(logging.ERROR, logger=logger_name):
            _fail_like_prefect(logger_name, f"connect to https://etl:{secret}@db failed, token={secret}")
        assert caplog.records, "the record is still logged"
        assert secret not in caplog.text
        record = caplog.records[-1]
        assert record.exc_info is None and "Traceback" in (record.exc_text or "")
        assert secret not in record.getMessage()

    def test_store_url_pieces_are_masked_in_telemetry_warnings(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A telemetry warning quoting half of FOREWARN_DB_URL's password (as a host name) shows ***."""
        monkeypatch.setenv("FOREWARN_DB_URL", "postgresql://etl:Zq1@ssWord9@127.0.0.1:1/t")
        get_settings.cache_clear()
        install_log_redaction()
        with caplog.at_level(logging.WARNING):
            logging.getLogger("forewarn.telemetry").warning("failed to resolve host %r", "ssWord9@127.0.0.1")
        assert "ssWord9" not in caplog.text and "***@127.0.0.1" in caplog.text

    def test_opt_out(self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
        """FOREWARN_REDACT_PREFECT_LOGS=false installs nothing: Prefect's logs are left as they are."""
        monkeypatch.setenv("FOREWARN_REDACT_PREFECT_LOGS", "false")
        get_settings.cache_clear()
        assert install_log_redaction() is None
        with caplog.at_level(logging.ERROR), caplog.at_level(logging.ERROR, logger="prefect.task_runs"):
            _fail_like_prefect("prefect.task_runs", "token=Zqraw9k")
        assert "Zqraw9k" in caplog.text

    def test_bad_settings_still_redact(self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
        """Decorating with a bad FOREWARN_* setting does not fail; the filter uses the default patterns."""
        monkeypatch.setenv("FOREWARN_RETRIES", "many")
        get_settings.cache_clear()
        assert install_log_redaction() is not None
        with caplog.at_level(logging.ERROR), caplog.at_level(logging.ERROR, logger="prefect.flow_runs"):
            _fail_like_prefect("prefect.flow_runs", "token=Zqraw9k")
        assert "Zqraw9k" not in caplog.text

    def test_installed_once_by_task_and_flow(self) -> None:
        """Decorating many tasks and flows leaves exactly one filter per logger."""
        import forewarn

        for _ in range(3):
            forewarn.task(lambda: None)
            forewarn.flow(lambda: None)
        filters = [f for f in logging.getLogger("prefect.task_runs").filters if isinstance(f, RedactingFilter)]
        assert len(filters) == 1
        assert filters[0].redactor.max_chars == LOG_MAX_CHARS

    def test_broken_record_is_passed_on(self) -> None:
        """A record whose arguments do not fit its format is left to logging's own error report."""
        record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "%d", ("x",), None)
        assert RedactingFilter(Redactor()).filter(record) is True


@pytest.mark.usefixtures("prefect_harness")
class TestRealPrefectRun:
    """A real flow run: secret parameters and a task failing with a secret in its message."""

    @pytest.fixture(autouse=True)
    def _remove_filters(self) -> Any:
        yield
        for name in ("prefect.task_runs", "prefect.flow_runs"):
            logger = logging.getLogger(name)
            for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
                logger.removeFilter(old)

    def test_no_secret_in_store_or_prefect_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        """Prefect logs the task's exception and traceback; the store keeps params and messages: none shows it."""
        import forewarn

        secret = "Zq-hunter 2/@#-9k"  # JSON and parameters: anything, spaces too
        url_secret = "Zq-hunter2/@#:-9k"  # in running text a URL ends at a space: no space in this one
        token = "Zqtoken42abc9k"

        @forewarn.task(retries=1, retry_on=ConnectionError, sleep=lambda s: None)
        def load(dsn: str) -> None:
            raise ConnectionError(f"no login to {dsn} with token={token}: {json.dumps({'password': secret})}")

        @forewarn.flow(name="secrets-test", score=False)
        def nightly(dsn: str, db_password: str, options: dict[str, Any]) -> None:
            load(dsn)

        prefect_logger = logging.getLogger("prefect")  # Prefect's loggers do not propagate to the root
        caplog.set_level(logging.INFO, logger="prefect")  # whatever level an earlier test left on it
        prefect_logger.addHandler(caplog.handler)
        try:
            state = nightly(
                dsn=f"postgresql://etl:{url_secret}@warehouse/prod",
                db_password=secret,
                options={"api_key": token, "rows": 10},
                return_state=True,
            )
        finally:
            prefect_logger.removeHandler(caplog.handler)
        assert state.is_failed()
        assert "Task run failed with exception" in caplog.text  # Prefect did log the failure...
        assert all(s not in caplog.text for s in (secret, url_secret, token))  # ...masked
        run = TelemetryStore(get_settings().db_url).runs(flow_name="secrets-test").iloc[0]
        assert run.parameters == {
            "dsn": "postgresql://***@warehouse/prod",
            "db_password": MASK,
            "options": {"api_key": MASK, "rows": 10},
        }
        assert run.parameters_hash == parameters_hash(run.parameters)
        db_file = Path(get_settings().db_url.removeprefix("sqlite:///")).read_bytes()
        assert all(s.encode() not in db_file for s in (secret, url_secret, token))

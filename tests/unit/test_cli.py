import logging

import pytest

import forwarder
from forwarder.cli import main, parse_settings
from forwarder.kafka.buffer_budget import DEFAULT_BUFFER_MB
from forwarder.logging_setup import TRACE
from forwarder.settings import PVA_QUEUE_SIZE

REQUIRED = [
    "--config-topic",
    "localhost:9092/cfg",
    "--status-topic",
    "localhost:9092/status",
    "--output-broker",
    "localhost:9092",
]


def test_required_options_and_defaults():
    s = parse_settings(REQUIRED, env={})
    assert s.config_topic == "cfg" and s.status_topic == "status"
    assert s.output_kafka == {"bootstrap.servers": "localhost:9092"}
    assert s.storage_topic is None and s.storage_kafka is None
    assert s.skip_retrieval is False
    assert s.pv_update_period_ms is None
    assert s.fake_pv_period_ms == 1000
    assert s.statistics_update_interval_s == 10.0
    assert s.producer_buffer_mb == DEFAULT_BUFFER_MB
    assert s.pva_queue_size == PVA_QUEUE_SIZE == 64
    assert s.log_level == logging.INFO
    assert s.service_id.isdigit()  # the PID


def test_all_options():
    s = parse_settings(
        REQUIRED
        + [
            "--storage-topic",
            "localhost:9092/store",
            "--skip-retrieval",
            "--pv-update-period",
            "500",
            "--fake-pv-period",
            "20",
            "--service-id",
            "fwd-1",
            "--log-file",
            "/tmp/x.log",
            "-v",
            "trace",
            "--grafana-carbon-address",
            "carbon:2003",
            "--grafana-metric-prefix",
            "fwd",
            "--statistics-update-interval",
            "2",
            "--prometheus-port",
            "9100",
        ],
        env={},
    )
    assert s.storage_topic == "store" and s.skip_retrieval
    assert (s.pv_update_period_ms, s.fake_pv_period_ms, s.service_id) == (500, 20, "fwd-1")
    assert s.log_file == "/tmp/x.log" and s.log_level == TRACE
    assert s.grafana_carbon_address == "carbon:2003" and s.grafana_metric_prefix == "fwd"
    assert s.statistics_update_interval_s == 2.0 and s.prometheus_port == 9100


@pytest.mark.parametrize(
    "given, used",
    [
        ("carbon", "carbon:2003"),  # an ESS ini: a bare host, graphyte's default port
        ("carbon.example.org:2013", "carbon.example.org:2013"),
        ("10.0.0.7", "10.0.0.7:2003"),
    ],
)
def test_grafana_carbon_address_takes_a_bare_host_or_host_port(given, used):
    s = parse_settings(REQUIRED + ["--grafana-carbon-address", given], env={})
    assert s.grafana_carbon_address == used


@pytest.mark.parametrize(
    "name, level",
    [
        ("Trace", TRACE),
        ("DEBUG", logging.DEBUG),
        ("warning", logging.WARNING),
        ("Error", logging.ERROR),
        ("Critical", logging.CRITICAL),
    ],
)
def test_verbosity_is_case_insensitive(name, level):
    assert parse_settings(REQUIRED + ["--verbosity", name], env={}).log_level == level


def test_ini_file(tmp_path):
    ini = tmp_path / "f.ini"
    ini.write_text(
        "# comment\nconfig-topic=localhost:9092/cfg\nstatus-topic=localhost:9092/st\n"
        "output-broker=localhost:9092\npv-update-period=500\nskip-retrieval=true\n"
        "verbosity=Debug\nproducer-buffer-mb=64\npva-queue-size=16\n"
    )
    s = parse_settings(["-c", str(ini)], env={})
    assert (s.config_topic, s.status_topic, s.pv_update_period_ms) == ("cfg", "st", 500)
    assert s.producer_buffer_mb == 64 and s.pva_queue_size == 16
    assert s.skip_retrieval and s.log_level == logging.DEBUG


def test_environment_variables():
    env = {
        "CONFIG_TOPIC": "localhost:9092/cfg",
        "STATUS_TOPIC": "localhost:9092/st",
        "OUTPUT_BROKER": "localhost:9092",
        "SERVICE_ID": "from-env",
        "FAKE_PV_PERIOD": "250",
        "PRODUCER_BUFFER_MB": "32",
    }
    s = parse_settings([], env=env)
    assert (s.config_topic, s.service_id, s.fake_pv_period_ms) == ("cfg", "from-env", 250)
    assert s.producer_buffer_mb == 32


def test_precedence_command_line_over_env_over_ini(tmp_path):
    ini = tmp_path / "f.ini"
    ini.write_text("service-id=ini\nfake-pv-period=1\npv-update-period=1\n")
    env = {"SERVICE_ID": "env", "FAKE_PV_PERIOD": "2"}
    s = parse_settings(REQUIRED + ["-c", str(ini), "--service-id", "cli"], env=env)
    assert s.service_id == "cli"  # command line beats env and ini
    assert s.fake_pv_period_ms == 2  # env beats ini
    assert s.pv_update_period_ms == 1  # ini beats the default


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config-topic", "localhost:9092"], "--config-topic: no topic"),
        (["--status-topic", "localhost:9092"], "--status-topic: no topic"),
        (["--storage-topic", "localhost:9092"], "--storage-topic: no topic"),
        (["--output-broker", "nohost"], "--output-broker: invalid broker"),
        (["--config-topic", "SASL_PLAINTEXT+PLAIN\\u@h:1/t"], "--config-topic-sasl-password"),
        (["--verbosity", "loud"], "--verbosity: unknown verbosity"),
        (["--fake-pv-period", "0"], "must be positive"),
        (["--producer-buffer-mb", "0"], "--producer-buffer-mb must be positive"),
        (["--pva-queue-size", "1"], "--pva-queue-size must be at least 2"),
        (["--grafana-carbon-address", "carbon host"], "host or host:port"),
    ],
)
def test_bad_settings_give_one_line_and_exit_2(args, message, capsys, monkeypatch):
    for name in ("CONFIG_TOPIC", "STATUS_TOPIC", "OUTPUT_BROKER", "STORAGE_TOPIC"):
        monkeypatch.delenv(name, raising=False)
    assert main(REQUIRED + args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_missing_required_option_exits_2(capsys):
    assert main(["--config-topic", "localhost:9092/c"]) == 2
    assert "--status-topic" in capsys.readouterr().err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == forwarder.__version__


def test_help(capsys):
    assert main(["--help"]) == 0
    assert "--pv-update-period" in capsys.readouterr().out


def test_password_is_not_in_the_settings_repr():
    s = parse_settings(
        REQUIRED[2:]
        + ["--config-topic", "SASL_PLAINTEXT+PLAIN\\u@h:1/t", "--config-topic-sasl-password", "s3"],
        env={},
    )
    assert s.config_kafka["sasl.password"] == "s3"
    assert "s3" not in repr(s)


def test_unwritable_log_file_exits_2(tmp_path, capsys):
    assert main(REQUIRED + ["--log-file", str(tmp_path / "missing-dir" / "f.log")]) == 2
    assert "cannot open --log-file" in capsys.readouterr().err


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_log_file_is_appended_with_time_level_and_logger(tmp_path, restore_root_logger):
    from forwarder.logging_setup import setup_logging

    path = tmp_path / "f.log"
    path.write_text("earlier line\n")
    setup_logging(logging.DEBUG, str(path))
    logging.getLogger("forwarder.test").debug("hello %s", "there")
    logging.getLogger("forwarder.test").log(TRACE, "too detailed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = path.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert len(lines) == 2
    assert lines[1].endswith("DEBUG forwarder.test: hello there")
    assert lines[1][:4].isdigit()  # starts with the date


def test_trace_level_is_named(tmp_path, restore_root_logger):
    from forwarder.logging_setup import setup_logging

    path = tmp_path / "f.log"
    setup_logging(TRACE, str(path))
    logging.getLogger("x").log(TRACE, "fine grained")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "TRACE x: fine grained" in path.read_text()

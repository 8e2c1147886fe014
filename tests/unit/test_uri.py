import pytest

from forwarder.kafka.uri import KafkaUri, UriError, kafka_config, parse_uri


def test_plain_host_port_topic_is_plaintext():
    uri = parse_uri("localhost:9092/forwarder_config")
    assert uri == KafkaUri(("localhost:9092",), "forwarder_config")
    assert kafka_config(uri, None, None) == {"bootstrap.servers": "localhost:9092"}


def test_topic_is_optional():
    assert parse_uri("broker.example.org:9092").topic is None


def test_broker_list():
    uri = parse_uri("a:9092, b:9093/t")
    assert uri.brokers == ("a:9092", "b:9093")
    assert kafka_config(uri, None, None)["bootstrap.servers"] == "a:9092,b:9093"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_uri_gives_sasl_settings(mechanism):
    uri = parse_uri(f"SASL_PLAINTEXT+{mechanism}\\alice@localhost:9093/forwarder_config")
    assert (uri.protocol, uri.mechanism, uri.username, uri.topic) == (
        "SASL_PLAINTEXT",
        mechanism,
        "alice",
        "forwarder_config",
    )
    assert kafka_config(uri, "pw", "/ca.pem") == {
        "bootstrap.servers": "localhost:9093",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
        "sasl.password": "pw",
    }


def test_sasl_ssl_uses_the_ca_file():
    uri = parse_uri("SASL_SSL+SCRAM-SHA-512\\bob@h:9094")
    config = kafka_config(uri, "pw", "/ca.pem")
    assert config["security.protocol"] == "SASL_SSL"
    assert config["ssl.ca.location"] == "/ca.pem"


def test_sasl_without_password_is_an_error():
    uri = parse_uri("SASL_PLAINTEXT+PLAIN\\alice@localhost:9093/t")
    with pytest.raises(UriError, match="no password"):
        kafka_config(uri, None, None)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "empty"),
        ("localhost", "host:port"),
        ("localhost:abc/t", "host:port"),
        ("localhost:99999/t", "out of range"),
        ("localhost:9092/bad topic", "invalid topic"),
        ("localhost:9092/", "invalid topic"),
        ("SASL_PLAINTEXT\\alice@localhost:9092", "PROTOCOL\\+MECHANISM"),
        ("SSL+PLAIN\\alice@localhost:9092", "security protocol"),
        ("SASL_PLAINTEXT+GSSAPI\\alice@localhost:9092", "SASL mechanism"),
        ("SASL_PLAINTEXT+PLAIN\\@localhost:9092", "user name"),
        ("a:1,,b:2", "host:port"),
    ],
)
def test_malformed_uris_say_what_is_wrong(text, problem):
    with pytest.raises(UriError, match=problem):
        parse_uri(text)

"""The console's aiokafka consumer gets the same security settings as every librdkafka client."""

from __future__ import annotations

import ssl

import pytest

from rigwatch.exceptions import ConfigError
from rigwatch.kafka import client_config
from services.console.kafka_auth import faust_credentials


def test_sasl_ssl_from_the_environment() -> None:
    env = {
        "RIGWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "RIGWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "RIGWATCH_KAFKA_SASL_USERNAME": "rigwatch",
        "RIGWATCH_KAFKA_SASL_PASSWORD": "s3cret",
    }

    creds = faust_credentials(client_config("b:9093", environ=env))

    assert creds is not None
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-256")  # type: ignore[attr-defined]
    assert isinstance(creds.ssl_context, ssl.SSLContext)  # type: ignore[attr-defined]
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"security.protocol": "SASL_PLAINTEXT"}, "GSSAPI"),
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}, "OAUTHBEARER"),
        ({"security.protocol": "KERBEROS"}, "KERBEROS"),
        ({"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"}, "TLS context"),
    ],
)
def test_what_the_consumer_cannot_honour_stops_the_start(conf: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        faust_credentials(conf)

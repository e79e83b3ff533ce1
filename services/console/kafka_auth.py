"""The console's faust (aiokafka) consumer on a secured cluster: credentials from ``RIGWATCH_KAFKA_*``.

Every other rigwatch client is librdkafka, configured by
:func:`rigwatch.kafka.client_config` from ``RIGWATCH_KAFKA_<PROPERTY>``. The
console's consumer is aiokafka's, so the security properties are translated
here; a setting it cannot honour is an error at start, not a consumer that
silently connects without it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from rigwatch.exceptions import ConfigError

__all__ = ["faust_credentials"]

_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _ssl_context(conf: Mapping[str, Any]) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=conf.get("ssl.ca.location"))
        if conf.get("ssl.certificate.location"):
            context.load_cert_chain(
                conf["ssl.certificate.location"], conf.get("ssl.key.location"), conf.get("ssl.key.password")
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"RIGWATCH_KAFKA_SSL_*: cannot build the TLS context: {exc}") from exc
    if str(conf.get("ssl.endpoint.identification.algorithm", "https")).lower() == "none":
        context.check_hostname = False
    if str(conf.get("enable.ssl.certificate.verification", "true")).lower() == "false":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def faust_credentials(conf: Mapping[str, Any]) -> CredentialsT | None:
    """faust's ``broker_credentials`` for the librdkafka properties *conf* (None: plaintext).

    Raises
    ------
    ConfigError
        A protocol or SASL mechanism the console's consumer does not support, or TLS files
        that cannot be read.

    Examples
    --------
    >>> faust_credentials({"bootstrap.servers": "b:9092"}) is None
    True
    >>> creds = faust_credentials({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
    ...                            "sasl.username": "rigwatch", "sasl.password": "s3cret"})
    >>> creds.protocol.value, creds.mechanism.value, creds.username
    ('SASL_PLAINTEXT', 'SCRAM-SHA-512', 'rigwatch')
    """
    protocol = str(conf.get("security.protocol", "PLAINTEXT")).upper()
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(_ssl_context(conf))
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        # librdkafka's default mechanism is GSSAPI (Kerberos), which needs more than properties.
        mechanism = str(conf.get("sasl.mechanism", conf.get("sasl.mechanisms", "GSSAPI"))).upper()
        if mechanism not in _MECHANISMS:
            raise ConfigError(
                f"RIGWATCH_KAFKA_SASL_MECHANISM={mechanism}: the console's consumer (aiokafka) takes"
                f" {', '.join(_MECHANISMS)}"
            )
        return SASLCredentials(
            username=conf.get("sasl.username"),
            password=conf.get("sasl.password"),
            ssl_context=_ssl_context(conf) if protocol == "SASL_SSL" else None,
            mechanism=mechanism,
        )
    raise ConfigError(
        f"RIGWATCH_KAFKA_SECURITY_PROTOCOL={protocol}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )

"""What every script needs to reach Fraise's ingress as a client would.

The Go test that runs a script passes, through the environment:
  FRAISE_FLIGHT_URI    grpc+tls://127.0.0.1:PORT, Envoy's ingress
  FRAISE_CA            the development CA (PEM file)
  FRAISE_CLIENT_CERT   the client certificate for mTLS (PEM file)
  FRAISE_CLIENT_KEY    its key (PEM file)
  FRAISE_TOKEN         a bearer token of tenant Acme (role analyst)
  FRAISE_TOKEN_OTHER   a bearer token of tenant Globex (role analyst)
  FRAISE_TOKEN_ADMIN   a bearer token of tenant Acme (role admin)
The server certificate names localhost, not the address: the clients are
told to expect that name.
"""
import json
import os
import sys


def env(name):
    v = os.environ.get(name)
    if not v:
        sys.exit(f"{name} is not set: run this script from its Go test")
    return v


def read(path):
    with open(path, "rb") as f:
        return f.read()


URI = env("FRAISE_FLIGHT_URI")
CA = read(env("FRAISE_CA"))
CERT = read(env("FRAISE_CLIENT_CERT"))
KEY = read(env("FRAISE_CLIENT_KEY"))
HOSTNAME = "localhost"


def token(name="FRAISE_TOKEN"):
    return env(name)


def flight_client(**kw):
    """pyarrow's Flight client (Arrow's C++ implementation), mTLS."""
    from pyarrow import flight
    return flight.FlightClient(URI, tls_root_certs=CA, cert_chain=CERT, private_key=KEY,
                               override_hostname=HOSTNAME, **kw)


def call_options(tok):
    from pyarrow import flight
    headers = [] if tok is None else [(b"authorization", b"Bearer " + tok.encode())]
    return flight.FlightCallOptions(headers=headers, timeout=60)


def adbc_connect(tok, autocommit=True):
    """The Python ADBC Flight SQL driver's DB-API connection, mTLS."""
    import adbc_driver_flightsql.dbapi as dbapi
    kw = {
        "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
        "adbc.flight.sql.client_option.mtls_cert_chain": CERT.decode(),
        "adbc.flight.sql.client_option.mtls_private_key": KEY.decode(),
        "adbc.flight.sql.client_option.tls_override_hostname": HOSTNAME,
    }
    if tok is not None:
        kw["adbc.flight.sql.authorization_header"] = "Bearer " + tok
    return dbapi.connect(URI, db_kwargs=kw, autocommit=autocommit)


class Checks:
    """Collects failed assertions, so one run reports every difference."""

    def __init__(self):
        self.failures = []
        self.passed = []

    def eq(self, what, got, want):
        if got == want or (isinstance(got, float) and isinstance(want, float) and got != got and want != want):
            self.passed.append(what)
        else:
            self.failures.append(f"{what}: got {got!r}, want {want!r}")

    def true(self, what, ok, detail=""):
        if ok:
            self.passed.append(what)
        else:
            self.failures.append(f"{what}: {detail}")

    def done(self, **summary):
        """Prints the JSON summary the Go test reads."""
        print(json.dumps({"passed": self.passed, "failures": self.failures, **summary}, default=str))

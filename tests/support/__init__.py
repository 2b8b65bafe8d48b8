"""Helpers shared by the test suites: real services on loopback, test keys.

* :mod:`tests.support.keys` — an Ed25519 test key, its JWKS file, and tokens.
* :mod:`tests.support.relayd` — the real relayd as a subprocess, with a
  control-socket client and WebSocket helpers.
"""

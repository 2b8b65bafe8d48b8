"""Shared wire-level code for every FF Cloud service.

``wire`` holds what more than one service needs, in one place: the protocol's
names (:mod:`wire.protocol`), the typed client messages and their codec
(:mod:`wire.messages`), the relay's envelope fast path (:mod:`wire.envelope`)
and JWT issuing and verification (:mod:`wire.tokens`). It does no I/O beyond
reading a key file.
"""

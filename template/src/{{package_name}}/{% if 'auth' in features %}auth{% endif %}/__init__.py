"""Authentication: users log in with a password and get a short-lived JWT access token.

- ``passwords.py``: argon2id hashes, computed off the event loop.
- ``tokens.py``: issuing and checking the signed tokens (PyJWT, HS256, ``SECRET_KEY``).
- ``service.py``: registration, login, and the ``Authenticator`` that verifies a token and
  caches the answer for the token's life.
- ``deps.py``: ``CurrentUser`` for handlers, the write guard the main routers get, and the
  client identity the rate limiter keys on.
- ``router.py``: ``/api/auth/register``, ``/api/auth/token``, ``/api/auth/me`` and
  ``/api/auth/password``.
"""

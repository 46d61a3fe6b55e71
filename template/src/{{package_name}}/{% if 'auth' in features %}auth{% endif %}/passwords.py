"""Password hashing with argon2id (argon2-cffi).

argon2 is slow and memory-hungry on purpose: with argon2-cffi's defaults (RFC 9106's
low-memory profile) one hash takes tens of milliseconds of CPU and 64 MiB of memory. Run on
the event loop, every login would stall every other request for that long, so hashing runs
in a worker thread. A capacity limiter bounds how many run at once: the thread pool alone
would allow 40 at a time, 2.5 GiB of memory during a burst of logins.
"""

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..settings import Settings


class Passwords:
    def __init__(self, hasher: PasswordHasher, *, concurrency: int = 2) -> None:
        self.hasher = hasher
        self._limiter = anyio.CapacityLimiter(concurrency)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Passwords":
        hasher = PasswordHasher(
            time_cost=settings.auth_argon2_time_cost,
            memory_cost=settings.auth_argon2_memory_cost,
            parallelism=settings.auth_argon2_parallelism,
        )
        return cls(hasher, concurrency=settings.auth_hash_concurrency)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str, password: str) -> bool:
        """True if ``password`` matches; a malformed stored hash is a mismatch, not an error."""
        try:
            return await anyio.to_thread.run_sync(
                self.hasher.verify, password_hash, password, limiter=self._limiter
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        return self.hasher.check_needs_rehash(password_hash)

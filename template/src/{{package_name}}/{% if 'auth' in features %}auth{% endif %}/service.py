"""Registration, login, password changes, and token verification with a cache.

Login and password changes read the hash on a connection they release before hashing, and
write in a short transaction of their own: an argon2 check takes tens of milliseconds,
and a pool connection held meanwhile would be one fewer for every other request.
"""

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import bindparam, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.cache import Cache, MemoryCache
from ..core.db import Database
from ..core.errors import Forbidden, Unauthorized
from ..core.models_base import utcnow
from ..settings import Settings
from ..users import service as users_service
from ..users.models import User as UserRow
from ..users.models import user_tag
from ..users.schemas import User, UserCreate
from .models import Credential, credentials_tag
from .passwords import Passwords
from .schemas import AccessToken, AuthenticatedUser, Registration
from .tokens import InvalidToken, TokenCodec

users = UserRow.__table__
credentials = Credential.__table__

# The user of a token: still there, still active, and no password change since it was issued.
GET_TOKEN_USER = (
    select(*users_service.USER_COLUMNS)
    .join(credentials, credentials.c.user_id == users.c.id)
    .where(
        users.c.id == bindparam("user_id"),
        users.c.is_active == true(),
        credentials.c.token_version == bindparam("version"),
    )
)
LOGIN_COLUMNS = (
    *users_service.USER_COLUMNS,
    credentials.c.password_hash,
    credentials.c.token_version,
)
GET_LOGIN = (
    select(*LOGIN_COLUMNS)
    .join(credentials, credentials.c.user_id == users.c.id)
    .where(users.c.email == bindparam("email"))
)
GET_CREDENTIAL = select(credentials.c.password_hash, credentials.c.token_version).where(
    credentials.c.user_id == bindparam("user_id")
)


class VerifiedTokens(MemoryCache):
    """Token -> verified user, each entry tagged with the user's tag and credentials tag.

    It is attached to the application cache (``Cache.attach``), so it forgets what the cache
    is told to forget: a write to the user (rename, deactivation, deletion: the users domain
    invalidates ``user_tag``), a password change (``credentials_tag``), the same
    invalidations arriving from another instance, and everything when invalidations may
    have been lost (``Cache.flush_local``).
    """


class Authenticator:
    """Registration, login, and the answer to "whose token is this?", cached.

    Verifying a token costs an HMAC check and a user lookup (does the user still exist, are
    they still active?): one SQL statement. A client sends the same token with every request
    for the token's whole life, so the verified user is kept under the token until the token
    expires; a hit costs a dict lookup, with no decode and no SQL. Only verified tokens are
    kept: a bad token is checked again each time (an HMAC, no SQL), so garbage cannot crowd
    out real entries. The map (``VerifiedTokens``) is a ``core.cache.MemoryCache``: bounded,
    LRU, TTL per entry.

    Revocation: a verification depends on the user and on their password, so each entry
    carries the user's tag (``users.models.user_tag``, invalidated by every write of the
    users domain to that user: rename, deactivation, deletion) and their credentials' tag
    (invalidated by a password change). Their next request is verified against the database
    again, where a deleted or deactivated user fails, and so does a token issued before the
    last password change (its ``ver`` claim is behind ``credentials.token_version``). The
    users domain knows nothing of tokens: it declares what its writes change, as for any
    cached read.

    Revocations travel the data cache's invalidation path rather than one of their own: the
    map is attached to the cache (``VerifiedTokens``). With the Redis level (cache=redis) that
    reaches every worker and instance; when the invalidation channel drops, the listener's
    flush empties this map with the L1, and until it is back entries live at most the
    cache's ``degraded_ttl``, so a revocation that could not be delivered is honoured within
    seconds. With the in-process cache, invalidations stay in the process, like the L1's:
    with several workers, another worker keeps accepting a revoked token it has cached until
    the token expires. That bound is why access tokens are short-lived
    (``AUTH_ACCESS_TOKEN_MINUTES``). With ``CACHE_ENABLED=false`` no verification is cached:
    no invalidation listener runs then.
    """

    def __init__(
        self,
        *,
        database: Database,
        tokens: TokenCodec,
        passwords: Passwords,
        cache: Cache,
        verified: VerifiedTokens,
        dummy_hash: str,
    ) -> None:
        self.database = database
        self.tokens = tokens
        self.passwords = passwords
        self.cache = cache
        self.verified = verified
        # Checked against when the e-mail is unknown, so that answer takes as long as a
        # wrong password: response times do not reveal which e-mails have accounts.
        self._dummy_hash = dummy_hash

    async def register(self, session: AsyncSession, data: Registration) -> User:
        # Hashed before the first statement, so no connection is held while hashing.
        password_hash = await self.passwords.hash(data.password.get_secret_value())
        user = await users_service.create_user(
            session, UserCreate(email=data.email, name=data.name)
        )
        await session.execute(
            insert(credentials).values(
                user_id=user.id, password_hash=password_hash, updated_at=utcnow()
            )
        )
        return user

    async def log_in(self, email: str, password: str) -> AccessToken:
        """An access token for the right password of an active user; 401 for anything else."""
        row = None
        # No account's e-mail holds U+0000, and PostgreSQL refuses to compare text with it.
        if "\x00" not in email:
            async with self.database.reads.connect() as conn:
                row = (await conn.execute(GET_LOGIN, {"email": email.strip().lower()})).first()
        if row is None:
            await self.passwords.verify(self._dummy_hash, password)
            raise Unauthorized("Incorrect e-mail or password.")
        if not await self.passwords.verify(row.password_hash, password) or not row.is_active:
            raise Unauthorized("Incorrect e-mail or password.")
        if self.passwords.needs_rehash(row.password_hash):
            # The cost settings changed since this hash was made: upgrade it now, the only
            # moment the plain password is at hand.
            new_hash = await self.passwords.hash(password)
            async with self.database.transaction() as session:
                await session.execute(
                    update(credentials)
                    .where(credentials.c.user_id == row.id)
                    .values(password_hash=new_hash, updated_at=utcnow())
                )
        return self._token(row.id, row.token_version)

    async def change_password(self, user_id: int, current: str, new: str) -> AccessToken:
        """Replace the password and revoke every token issued before; a fresh token for the
        caller, so changing the password does not log them out too. 403 for a wrong current
        password."""
        async with self.database.reads.connect() as conn:
            row = (await conn.execute(GET_CREDENTIAL, {"user_id": user_id})).first()
        if row is None or not await self.passwords.verify(row.password_hash, current):
            raise Forbidden("The current password is incorrect.")
        new_hash = await self.passwords.hash(new)
        async with self.database.transaction() as session:
            version = (
                await session.execute(
                    update(credentials)
                    .where(credentials.c.user_id == user_id)
                    .values(
                        password_hash=new_hash,
                        token_version=credentials.c.token_version + 1,
                        updated_at=utcnow(),
                    )
                    .returning(credentials.c.token_version)
                )
            ).scalar_one()
        await self.forget_credentials(user_id)
        return self._token(user_id, version)

    def _token(self, user_id: int, version: int) -> AccessToken:
        return AccessToken(
            access_token=self.tokens.issue(user_id, version),
            expires_in=self.tokens.lifetime_seconds,
        )

    async def authenticate(self, token: str) -> AuthenticatedUser | None:
        """The active user ``token`` belongs to, or None if the token or the user is not valid."""
        user: AuthenticatedUser | None = self.verified.get(token)
        if user is not None:
            return user
        try:
            claims = self.tokens.decode(token)
        except InvalidToken:
            return None
        tags = frozenset({user_tag(claims.user_id), credentials_tag(claims.user_id)})
        # A verification that read the user before a revocation (from this process or
        # another instance) or a flush, and finishes after it, must not cache what it read.
        with self.cache.fenced() as fence:
            async with self.database.reads.connect() as conn:
                values = {"user_id": claims.user_id, "version": claims.version}
                row = (await conn.execute(GET_TOKEN_USER, values)).first()
        if row is None:
            return None
        user = AuthenticatedUser.model_validate(row._mapping)
        if not fence.spoils(tags) and self.cache.enabled:
            ttl = claims.expires_at - time.time()
            if self.cache.degraded_ttl is not None:
                ttl = min(ttl, self.cache.degraded_ttl)
            self.verified.set(token, user, ttl, tags=tags)
        return user

    async def forget_credentials(self, user_id: int) -> None:
        """Drop the cached verifications of ``user_id``'s tokens here and in every process the
        cache's invalidations reach. Call it after the change is committed, so a
        verification that misses meanwhile reads the changed password's token version."""
        await self.cache.invalidate(credentials_tag(user_id))


@asynccontextmanager
async def open_authenticator(
    settings: Settings, database: Database, cache: Cache
) -> AsyncIterator[Authenticator]:
    passwords = Passwords.from_settings(settings)
    verified = VerifiedTokens(settings.auth_token_cache_max_entries)
    cache.attach(verified)
    yield Authenticator(
        database=database,
        tokens=TokenCodec.from_settings(settings),
        passwords=passwords,
        cache=cache,
        verified=verified,
        dummy_hash=await passwords.hash(secrets.token_urlsafe(16)),
    )

"""Where orders and certificates are kept, as the settings say: SQLite files in the data dir
(the default: one machine), or the PostgreSQL of ``--database-url`` shared by every node."""

from __future__ import annotations

from collections.abc import Callable

import database
import orders
import trustbadges
from orders import OrderStore, PostgresOrderStore, SqliteOrderStore
from trustbadges import CertificateService, KeyRing, KeyStoreError

from .settings import ENV_PREFIX, Settings

__all__ = ["DatabaseStartError", "certificate_service", "check_database", "order_store"]

class DatabaseStartError(Exception):
    """The configured database cannot be used; the message is the one line to print."""


def order_store(settings: Settings, *, handoff: bool = False) -> OrderStore:
    """The order store of a server process, or (``handoff``) of the hand-off consumer's process:
    each a pool of its own, sized by the settings (``LIVEROOM_DATABASE_*_POOL_MAX``)."""
    if settings.database_url is None:
        return SqliteOrderStore.in_data_dir(settings.data_dir)
    size = (settings.database_handoff_pool_max if handoff
            else settings.database_orders_pool_max)
    return PostgresOrderStore(settings.database_url, pool_size=size,
                              pool_min=settings.database_pool_min)


def certificate_service(settings: Settings, clock: Callable[[], int]) -> CertificateService:
    return CertificateService.open(settings.data_dir, now_ms=clock,
                                   database_url=settings.database_url,
                                   signing_key_file=settings.signing_key_file,
                                   pool_size=settings.database_certificates_pool_max,
                                   pool_min=settings.database_pool_min)


async def check_database(settings: Settings) -> None:
    """With a database URL: connect and migrate both stores now, so that a bad URL, an
    unreachable server or a schema from a newer release stops the start with one clear line
    (``DatabaseStartError``) instead of failing requests later; likewise an unusable signing
    key file."""
    if settings.signing_key_file is not None:
        try:
            KeyRing.from_file(settings.signing_key_file)
        except KeyStoreError as exc:
            raise DatabaseStartError(f"{ENV_PREFIX}SIGNING_KEY_FILE: {exc}") from None
    url = settings.database_url
    if url is None:
        return
    where = database.redact(url)
    store = PostgresOrderStore(url, pool_size=1)
    certificates = trustbadges.PostgresCertificateStore(url, pool_size=1)
    try:
        await store.open()
        await certificates.open()
    except (orders.StoreUnavailable, trustbadges.StoreUnavailable) as exc:
        raise DatabaseStartError(f"cannot reach the database {where}: {exc.detail}") from None
    except database.DatabaseError as exc:
        raise DatabaseStartError(str(exc)) from None
    finally:
        await store.close()
        await certificates.close()

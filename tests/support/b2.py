"""b2sdk's in-process simulator with production-like part sizes, and a B2Store on it."""

from __future__ import annotations

from typing import Any

from b2sdk.v2 import B2Api, B2HttpApiConfig, InMemoryAccountInfo, RawSimulator

from tasks.storage.b2 import B2Store


class FastSimulator(RawSimulator):
    """b2sdk's simulator with production-like part sizes.

    The stock 200-byte minimum part turns every upload into a slow multipart upload. Also
    injects failures into listing, download and delete (the stock one only fails uploads).
    """

    MIN_PART_SIZE = 5 * 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures: dict[str, list[Exception]] = {}

    def _maybe_fail(self, op: str) -> None:
        pending = self.failures.get(op)
        if pending:
            raise pending.pop(0)

    def list_file_names(self, *args: Any, **kwargs: Any) -> Any:
        self._maybe_fail("list")
        return super().list_file_names(*args, **kwargs)

    def download_file_from_url(self, *args: Any, **kwargs: Any) -> Any:
        self._maybe_fail("download")
        return super().download_file_from_url(*args, **kwargs)

    def delete_file_version(self, *args: Any, **kwargs: Any) -> Any:
        self._maybe_fail("delete")
        return super().delete_file_version(*args, **kwargs)


def make_b2_api() -> tuple[B2Api, FastSimulator, str, str]:
    api = B2Api(InMemoryAccountInfo(), api_config=B2HttpApiConfig(_raw_api_class=FastSimulator))
    sim = api.session.raw_api
    assert isinstance(sim, FastSimulator)
    account_id, master_key = sim.create_account()
    api.authorize_account(
        realm="production", application_key_id=account_id, application_key=master_key
    )
    return api, sim, account_id, master_key


def make_b2_store(sleeps: list[float] | None = None) -> tuple[B2Store, FastSimulator]:
    """A ``B2Store`` on a private bucket in a fresh in-process simulator (no real sleeping)."""
    api, sim, _, _ = make_b2_api()
    bucket = api.create_bucket("plumbline-test", "allPrivate")
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    return B2Store(bucket, max_attempts=4, backoff_s=0.01, sleep=record), sim

"""API keys of ``exec-server``: the JSON file named by ``CHRONOGRAPH_EXEC_KEYS``, key -> customer, tier.

``{"KEY": {"customer": "cus_1", "tier": "pro"}}``. Keys are kept only as SHA-256 digests and a request's
key is compared with every one of them (``hmac.compare_digest``, no early exit), so neither the time
taken nor the order of the file tells an attacker anything. Errors about the file never show a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from .._config import ConfigError, _read_text

__all__ = ["KEYS_ENV", "MIN_KEY_LENGTH", "Identity", "KeyRing"]

KEYS_ENV = "CHRONOGRAPH_EXEC_KEYS"
MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Identity:
    """Who a key belongs to. ``key_id`` is a short digest prefix: safe in logs and limit tables."""

    customer: str
    tier: str
    key_id: str


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    def __init__(self, entries: Mapping[str, Identity]) -> None:
        self._entries = [(_digest(key), ident) for key, ident in entries.items()]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, given: str) -> Identity | None:
        """The identity of ``given``, in time independent of which key (if any) matches."""
        probe = _digest(given)
        found: Identity | None = None
        for digest, ident in self._entries:
            if hmac.compare_digest(probe, digest):
                found = ident
        return found

    @classmethod
    def from_file(cls, path: str, tiers: Collection[str]) -> KeyRing:
        """Read and check the keys file. Raises :class:`ConfigError` naming the entry by its customer."""
        where = f"{KEYS_ENV} ({path})"
        try:
            raw = _read_text(Path(path))  # bounded, UTF-8, one-line errors: as a configuration file
        except ConfigError as exc:
            raise ConfigError(f"{KEYS_ENV}: {exc}") from None
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON: {exc}") from None
        if not isinstance(doc, dict) or not doc:
            raise ConfigError(f'{where}: expected {{"KEY": {{"customer": "...", "tier": "..."}}, ...}}')
        entries: dict[str, Identity] = {}
        for n, (key, value) in enumerate(doc.items(), start=1):
            label = f"entry {n}"
            if not isinstance(value, dict) or set(value) != {"customer", "tier"}:
                raise ConfigError(f"{where}: {label}: expected exactly the keys customer and tier")
            customer, tier = value["customer"], value["tier"]
            if not isinstance(customer, str) or not customer or not isinstance(tier, str):
                raise ConfigError(f"{where}: {label}: customer and tier must be non-empty strings")
            label = f"entry {n} (customer {customer[:64]!r})"
            if tier not in tiers:
                raise ConfigError(f"{where}: {label}: tier {tier[:32]!r} is not under exec.tiers "
                                  f"({', '.join(sorted(tiers))})")
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigError(f"{where}: {label}: key shorter than {MIN_KEY_LENGTH} characters")
            entries[key] = Identity(customer, tier, hashlib.sha256(key.encode()).hexdigest()[:12])
        return cls(entries)

    @classmethod
    def from_environment(cls, tiers: Collection[str], environ: Mapping[str, str] | None = None) -> KeyRing:
        path = (os.environ if environ is None else environ).get(KEYS_ENV, "").strip()
        if not path:
            raise ConfigError(f"{KEYS_ENV} is not set: name the JSON file of API keys "
                              '({"KEY": {"customer": "cus_1", "tier": "pro"}}); the server never runs open')
        return cls.from_file(path, tiers)

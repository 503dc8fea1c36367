"""Keyed-hash pseudonyms per recipient: HMAC-SHA256(key(recipient), value), 16 hex digits.

The key is derived from the deployment's pseudonym key and the recipient's name, so one
recipient always gets the same pseudonym for an identifier and two recipients cannot join
their data on it.
"""

from __future__ import annotations

import hashlib
import hmac

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

NAME = "pseudonymise"
ROLES = ("id",)


class Params(BaseModel):
    """``length``: hex digits kept (16 = 64 bits)."""

    model_config = ConfigDict(extra="forbid")
    length: int = Field(16, ge=8, le=64)


def recipient_key(master: bytes, recipient: str) -> bytes:
    """The recipient's own key."""
    return hmac.new(master, b"citypulse-share-recipient\x00" + recipient.encode(),
                    hashlib.sha256).digest()


def pseudonym(key: bytes, value: str, length: int = 16) -> str:
    """The pseudonym of ``value`` under a recipient key."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:length]


def apply(df: pl.DataFrame, field: str, params: Params, ctx) -> pl.DataFrame:
    """Replace ``field`` by its pseudonyms (nulls stay null)."""
    key = ctx.cache.get("pseudonym_key")
    if key is None:
        key = ctx.cache["pseudonym_key"] = recipient_key(ctx.pseudonym_key, ctx.recipient)
    memo: dict = ctx.cache.setdefault(("pseudonyms", params.length), {})
    col = df.get_column(field).cast(pl.Utf8)
    uniq = col.drop_nulls().unique().to_list()
    missing = [u for u in uniq if u not in memo]
    for u in missing:
        memo[u] = pseudonym(key, u, params.length)
    mapping = {u: memo[u] for u in uniq}
    return df.with_columns(col.replace_strict(mapping, default=None, return_dtype=pl.Utf8)
                           .alias(field))

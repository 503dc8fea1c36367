-- Databases migrated before 042 granted the collector UPDATE on raw's metric columns for the
-- merge; citypulse.merge_raw() does it now, so take the grant back.
REVOKE UPDATE (v0, v1, v2, v3, v4, v5, v6, v7) ON citypulse.raw FROM citypulse_collector;

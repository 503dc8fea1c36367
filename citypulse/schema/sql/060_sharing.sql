-- Governed data sharing (sharing/, docs/sharing.md): evidence of every transfer, signed chain
-- heads, approval references and the policy log, in their own schema so that the general
-- grants of 040_roles (citypulse.apply_role_grants(), default privileges) never reach them.
--
-- evidence, chain_heads and policy_log are append-only: no citypulse role is granted
-- UPDATE, DELETE or TRUNCATE, and triggers refuse them for everyone else too.  What a
-- superuser could still do (disable the triggers) is what `citypulse share verify` detects:
-- every row is hash-chained to the previous one and chain heads are signed (Ed25519) and
-- exported outside the database.

CREATE SCHEMA IF NOT EXISTS citypulse_share;

CREATE TABLE IF NOT EXISTS citypulse_share.evidence (
    seq              bigint PRIMARY KEY,          -- position in the chain, 1, 2, ...
    evidence_id      uuid NOT NULL UNIQUE,
    request_id       text NOT NULL,
    at               timestamptz NOT NULL,
    channel          text NOT NULL,               -- cli | http
    recipient        text NOT NULL,
    scenario         text NOT NULL,
    dataset          text NOT NULL,
    policy_hash      text NOT NULL,
    fields_delivered jsonb NOT NULL,
    fields_withheld  jsonb NOT NULL,
    transforms       jsonb NOT NULL,
    time_from        timestamptz,
    time_to          timestamptz,
    format           text NOT NULL,
    row_count        bigint NOT NULL,
    byte_count       bigint NOT NULL,
    sha256           text NOT NULL,
    destination      text NOT NULL,
    approval_ref     text,
    outcome          text NOT NULL,               -- delivered | refused
    prev_hash        text NOT NULL,
    hash             text NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_at_idx ON citypulse_share.evidence (at);

CREATE TABLE IF NOT EXISTS citypulse_share.chain_heads (
    seq        bigint PRIMARY KEY,
    hash       text NOT NULL,
    signed_at  timestamptz NOT NULL,
    public_key text NOT NULL,
    signature  text NOT NULL
);

CREATE TABLE IF NOT EXISTS citypulse_share.approvals (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scenario    text NOT NULL,
    reference   text NOT NULL,
    route       text NOT NULL,
    note        text NOT NULL DEFAULT '',
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    revoked_by  text,
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS approvals_scenario_idx ON citypulse_share.approvals (scenario);

CREATE TABLE IF NOT EXISTS citypulse_share.policy_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    policy_hash text NOT NULL,
    prev_hash   text,
    canonical   text NOT NULL,
    diff        text NOT NULL,
    seen_by     text NOT NULL
);

CREATE OR REPLACE FUNCTION citypulse_share.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'citypulse_share.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['evidence', 'chain_heads', 'policy_log'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS append_only ON citypulse_share.%I', t);
        EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON '
                       'citypulse_share.%I FOR EACH ROW EXECUTE FUNCTION '
                       'citypulse_share.refuse_change()', t);
        EXECUTE format('DROP TRIGGER IF EXISTS append_only_truncate ON citypulse_share.%I', t);
        EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON '
                       'citypulse_share.%I FOR EACH STATEMENT EXECUTE FUNCTION '
                       'citypulse_share.refuse_change()', t);
    END LOOP;
END $$;

REVOKE ALL ON SCHEMA citypulse_share FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA citypulse_share FROM PUBLIC, citypulse_migrator,
    citypulse_collector, citypulse_worker, citypulse_dashboard;
GRANT USAGE ON SCHEMA citypulse_share TO citypulse_migrator, citypulse_worker,
    citypulse_dashboard;
GRANT SELECT, INSERT ON citypulse_share.evidence, citypulse_share.chain_heads,
    citypulse_share.approvals, citypulse_share.policy_log
    TO citypulse_migrator, citypulse_worker, citypulse_dashboard;
GRANT UPDATE (revoked_by, revoked_at) ON citypulse_share.approvals
    TO citypulse_migrator, citypulse_dashboard;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA citypulse_share
    TO citypulse_migrator, citypulse_worker, citypulse_dashboard;

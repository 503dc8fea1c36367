from citypulse import schema
from citypulse.settings import Settings


def _issued(backend):
    return schema.migrate(None, Settings(), backend=backend, dry_run=True)


def test_timescale_path_issues_hypertable_cagg_compression_retention():
    stmts = _issued("timescale")
    joined = "\n".join(stmts)
    assert "create_hypertable('citypulse.raw'" in joined
    assert "timescaledb.continuous" in joined and "add_continuous_aggregate_policy" in joined
    assert "timescaledb.compress" in joined and "add_compression_policy" in joined
    assert joined.count("add_retention_policy") == 2
    assert "ensure_raw_partitions" not in joined  # no plain-PG partitioning on Timescale
    assert stmts == [s for step in schema.plan("timescale") for s in step.statements]


def test_postgres_path_has_partitions_and_no_timescale():
    joined = "\n".join(_issued("postgres"))
    assert "PARTITION BY RANGE" in joined and "ensure_raw_partitions" in joined
    assert "timescaledb" not in joined and "create_hypertable" not in joined


def test_split_statements_keeps_dollar_bodies():
    text = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\n SELECT 1;\n SELECT 2;\n$$;\nSELECT 3;\n"
    assert len(schema.split_statements(text)) == 2

import psycopg

from citypulse import schema
from citypulse.settings import Settings


def test_postgres_migration_executes_exactly_the_plan(pg):
    base = pg.url.rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS plan_check")
        c.execute("CREATE DATABASE plan_check")
    url = base + "/plan_check"
    settings = Settings(database_url=url, store_backend="postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        issued = schema.migrate(conn, settings)
        assert issued == [s for step in schema.plan("postgres") for s in step.statements]
        assert schema.migrate(conn, settings) == []  # idempotent
        assert schema.current_backend(conn) == "postgres"
        n = conn.execute("SELECT count(*) FROM citypulse.schema_migrations").fetchone()[0]
        assert n == len(schema.plan("postgres"))

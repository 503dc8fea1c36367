"""The one typed settings model of citypulse.

In: environment variables prefixed ``CITYPULSE_`` (and a ``.env`` file), plus keyword
overrides from command-line flags.  Out: a frozen :class:`Settings`.  Validation does no
I/O; connections open only when a component starts.  A wrong value fails at start with a
message naming the environment variable and the fix::

    settings = load_settings(mqtt_url="mqtt://127.0.0.1:1883")

Every default lives here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "CITYPULSE_"


class ConfigError(ValueError):
    """A setting is wrong; the message names the key and the fix."""


class MqttEndpoint:
    """Parsed parts of an ``mqtt://user:pass@host:port`` (or ``mqtts://``) URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    def __repr__(self) -> str:
        return f"MqttEndpoint({self.host}:{self.port}, tls={self.tls}, user={self.username})"


class Settings(BaseSettings):
    """All of citypulse's settings, with their defaults."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # --- connections -------------------------------------------------------------------
    mqtt_url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="Broker URL, mqtt://user:pass@host:port or mqtts:// for TLS.",
    )
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/citypulse",
        description="PostgreSQL/TimescaleDB URL, postgresql://user:pass@host:port/db.",
    )
    mqtt_ca_file: Path | None = Field(None, description="CA bundle for mqtts:// brokers.")

    # --- wire contract -----------------------------------------------------------------
    topic_prefix: str = Field("city", description="First topic level of the wire contract.")
    max_payload_bytes: int = Field(
        1_048_576, ge=1024, description="Larger MQTT payloads are dead-lettered as too_large."
    )
    max_future_s: float = Field(
        300.0, ge=0, description="Readings stamped further ahead than this are bad_timestamp."
    )
    clock_ahead_s: float = Field(
        5.0, ge=0, description="A reading stamped further ahead of its arrival than this comes "
                               "from a device clock running fast: clock_ahead_policy applies.")
    clock_ahead_policy: Literal["restamp", "dead_letter"] = Field(
        "restamp", description="restamp: store it at its arrival time, the original kept as a "
                               "'restamped' dead letter; dead_letter: reject it ('clock_ahead').")

    # --- collector ---------------------------------------------------------------------
    share_group: str | None = Field(
        None, description="MQTT 5 shared-subscription group ($share/GROUP/...)."
    )
    client_id: str | None = Field(None, description="MQTT client id (default: derived).")
    batch_max_readings: int = Field(
        50_000, ge=1, description="A batch is committed at this many readings..."
    )
    batch_max_ms: int = Field(200, ge=1, description="...or after this many milliseconds.")
    max_inflight_messages: int = Field(
        20_000, ge=1, description="Unacknowledged messages a collector holds at most."
    )
    writer_connections: int = Field(
        2, ge=1, le=16, description="Parallel database writer connections per collector."
    )
    spool_dir: Path = Field(
        Path(".citypulse/spool"), description="On-disk spool used while the database is down."
    )
    spool_max_bytes: int = Field(
        512 * 1024 * 1024, ge=0, description="Spool size at which the collector stops acking."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Bind address of /metrics (0.0.0.0 to let Prometheus scrape)."
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint."
    )
    device_rate_limit: float = Field(
        50.0, gt=0, description="Messages/s one device or gateway may send before dead letters."
    )

    # --- SensorThings MQTT (standards/sta/mqtt.py, docs/standard-apis.md) ----------------
    sta_mqtt: bool = Field(
        False, description="Collectors publish each committed batch on the internal topic "
                           "{prefix}/v1/committed and `citypulse up` runs `citypulse sta mqtt`, "
                           "which relays each observation to v1.1/Datastreams(id)/Observations.")
    sta_mqtt_entity_set: bool = Field(
        False, description="The relay also publishes every observation on v1.1/Observations.")
    web_public_url: str | None = Field(
        None, description="The web app's URL as clients reach it (the @iot.selfLink of "
                          "observations sent over MQTT; default http://DASHBOARD_HOST:"
                          "DASHBOARD_PORT).")

    # --- source adapters (ingest/sources/) ---------------------------------------------
    sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Foreign sources the collectors also take, comma-separated: thingsboard, "
                    "chirpstack, ttn, http (see `citypulse sources list`).")
    sources_mapping_dir: Path | None = Field(
        None, description="Directory of <source>.yaml mapping files overriding the shipped ones.")
    sources_quarantine: bool = Field(
        False, description="Unknown devices named by a source go to the quarantine list "
                           "(their readings still dead-lettered unknown_sensor).")
    ingest_database_url: str | None = Field(
        None, description="Database URL of HTTP push (a collector-role login; default "
                          "database_url).")

    # --- store -------------------------------------------------------------------------
    store_backend: Literal["auto", "timescale", "postgres"] = Field(
        "auto", description="auto: TimescaleDB when the extension is available."
    )
    raw_retention_days: int = Field(7, ge=1, description="Raw readings kept this many days.")
    rollup_retention_days: int = Field(
        3650, ge=1, description="One-minute rollups kept this many days."
    )
    partitions_ahead_days: int = Field(
        2, ge=1, description="Plain PostgreSQL: daily partitions created this far ahead."
    )

    # --- local stack -------------------------------------------------------------------
    pg_bindir: Path | None = Field(
        None, description="Private stack: PostgreSQL server binaries (default: the newest "
        "/usr/lib/postgresql/*/bin); TimescaleDB is preloaded when installed there."
    )
    data_dir: Path = Field(
        Path(".citypulse"), description="Where `citypulse up` keeps private services' data."
    )
    demo_sensors: int = Field(
        20_000, ge=1, description="Sensors of the demo deployment (`citypulse up --sensors`)."
    )

    # --- dashboards --------------------------------------------------------------------
    dashboard_host: str = Field("127.0.0.1", description="Dashboard bind address.")
    dashboard_port: int = Field(8050, ge=1, le=65535, description="Dashboard port.")
    dashboard_secret: str = Field(
        "change-me-citypulse-dev-secret", min_length=16, description="Session signing key."
    )
    users_file: Path | None = Field(
        None, description="YAML of dashboard users (name, role, password hash)."
    )
    kiosk_token: str | None = Field(None, description="Token that opens /wall read-only.")
    ingest_metrics_urls: list[str] = Field(
        default_factory=list,
        description="Collectors' Prometheus /metrics URLs read by the dashboards' /ingest page "
                    "(default: http://127.0.0.1:METRICS_PORT/metrics when metrics_port is set).")

    # --- web server and access control (dashboards/server.py, dashboards/security.py) ---
    env: Literal["development", "production"] = Field(
        "development", description="production refuses the dev users and the dev secret.")
    web_workers: int = Field(2, ge=1, le=64, description="Web server worker processes.")
    web_threads: int = Field(8, ge=1, le=256, description="Threads per web worker.")
    web_timeout_s: int = Field(120, ge=5, description="A request running longer is aborted.")
    web_graceful_s: int = Field(20, ge=0, description="SIGTERM: seconds to finish requests.")
    web_tls_cert: Path | None = Field(None, description="PEM certificate: serve HTTPS.")
    web_tls_key: Path | None = Field(None, description="PEM private key of web_tls_cert.")
    web_access_log: bool = Field(True, description="Log one line per request (no query).")
    web_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins besides the app's own that may send state-changing requests.")
    session_cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto", description="Secure session cookie: auto = when the request came over TLS.")
    session_lifetime_min: int = Field(
        720, ge=1, description="A login lasts at most this many minutes (kiosk: no limit).")
    session_idle_min: int = Field(
        60, ge=1, description="A session unused this many minutes is logged out.")
    login_user_max_failures: int = Field(
        10, ge=1, description="Failed logins for one user before a lockout.")
    login_addr_max_failures: int = Field(
        30, ge=1, description="Failed logins from one client address before a lockout.")
    login_free_failures: int = Field(
        3, ge=0, description="Failures per user (x3 per address) answered without delay.")
    login_delay_s: float = Field(
        1.0, ge=0, description="First throttling delay after the free failures; doubles.")
    login_lockout_s: int = Field(
        900, ge=1, description="Lockout length; failures older than this are forgotten.")

    # --- twin --------------------------------------------------------------------------
    twin_interval_s: float = Field(5.0, gt=0, description="Twin worker: seconds between passes.")
    twin_recompute_s: int = Field(
        300, ge=60, description="Twin worker: trailing seconds re-aggregated every 30 s (late data)."
    )
    twin_place_tolerance_m: float = Field(
        25.0, gt=0, description="A segment sensor further than this from any road is unplaceable."
    )
    twin_trip_lookback_h: float = Field(
        6.0, gt=0, description="Truck trips are rebuilt from this many hours of positions."
    )

    # --- analytics ---------------------------------------------------------------------
    rules_file: Path | None = Field(None, description="Alert rules YAML (default: built in).")
    webhook_urls: list[str] = Field(default_factory=list, description="Alert webhooks.")
    alerts_tick_s: float = Field(1.0, gt=0, description="Alert evaluation period (seconds).")
    webhook_max_attempts: int = Field(8, ge=1, description="Webhook POST attempts per alert.")
    webhook_backoff_s: float = Field(0.5, ge=0, description="First webhook retry delay.")
    webhook_backoff_cap_s: float = Field(60.0, ge=0, description="Longest webhook retry delay.")
    webhook_timeout_s: float = Field(5.0, gt=0, description="Webhook HTTP timeout.")

    # --- data sharing (sharing/, docs/sharing.md) ------------------------------------------
    share_grading_file: Path | None = Field(
        None, description="YAML overriding the built-in grading (sharing/grading.yaml).")
    share_negative_list_file: Path | None = Field(
        None, description="Negative list YAML (default: sharing/negative_list.yaml).")
    share_scenarios_dir: Path | None = Field(
        None, description="Folder of scenario YAML files (default: sharing/scenarios).")
    share_pseudonym_key: SecretStr | None = Field(
        None, description="Key of the per-recipient keyed-hash pseudonyms (default: a random "
                          "key kept in DATA_DIR/share/pseudonym.key).")
    share_signing_key: SecretStr | None = Field(
        None, description="Ed25519 private key (base64 of the 32-byte seed) signing the "
                          "evidence chain head (default: DATA_DIR/share/signing.key).")
    share_heads_file: Path | None = Field(
        None, description="Where signed chain heads are exported, one JSON line each "
                          "(default: DATA_DIR/share/heads.jsonl).")
    share_rate_limit_per_min: int = Field(
        60, ge=1, description="Share API requests one recipient key may make per minute.")

    # --- commands (remote control) -----------------------------------------------------
    commands_expires_s: float = Field(
        300.0, gt=0, description="A command not answered this long after its request expires.")
    commands_max_attempts: int = Field(
        3, ge=1, description="Sends of one command (first + re-sends) before it fails.")
    commands_retry_after_s: float = Field(
        10.0, gt=0, description="Re-send a sent command with no answer after this long.")
    commands_fleet_rate: float = Field(
        200.0, gt=0, description="Fleet commands: devices sent to per second at most.")
    commands_abort_pct: float = Field(
        20.0, ge=0, le=100, description="Fleet commands: stop when more than this % fail.")
    commands_tick_s: float = Field(
        0.2, gt=0, description="Commands worker: longest wait between passes.")
    commands_sump_min_m: float = Field(
        0.3, description="Precondition: no pump start below this sump level (m).")
    commands_telemetry_max_age_s: float = Field(
        900.0, gt=0, description="Preconditions trust telemetry at most this old.")

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts", "tcp") or not parts.hostname:
            raise ValueError("use mqtt://[user:pass@]host:port (or mqtts:// for TLS)")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return v

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            raise ValueError("use postgresql://user[:pass]@host:port/dbname")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "+#") or v.startswith("/") or v.endswith("/"):
            raise ValueError("a topic prefix like 'city' (no wildcards, no leading/trailing /)")
        return v

    @field_validator("sources", mode="before")
    @classmethod
    def _split_sources(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("share_group")
    @classmethod
    def _check_share(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/+#")):
            raise ValueError("a group name without '/', '+' or '#'")
        return v

    @property
    def web_tls(self) -> bool:
        """Whether the web server itself speaks HTTPS."""
        return self.web_tls_cert is not None

    @property
    def web_url(self) -> str:
        """The web app's URL: web_public_url, else its own bind address and scheme."""
        if self.web_public_url:
            return self.web_public_url.rstrip("/")
        scheme = "https" if self.web_tls else "http"
        return f"{scheme}://{self.dashboard_host}:{self.dashboard_port}"

    @property
    def mqtt(self) -> MqttEndpoint:
        """The broker URL, parsed."""
        return MqttEndpoint(self.mqtt_url)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment plus non-None ``overrides``.

    Raises :class:`ConfigError` naming the environment variable of each bad key.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "?"
            env = ENV_PREFIX + key.upper()
            lines.append(f"{env} ({key}): {err['msg']}; got {err.get('input')!r}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None

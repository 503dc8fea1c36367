"""Static checks of the production deployment files (no Docker engine needed).

docker-compose.yml, Dockerfile, .env.example and deploy/ are parsed and checked against
the code: every service runs a real ``citypulse`` command with options it accepts, every
``CITYPULSE_*`` name is a settings field and every service's environment validates.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from citypulse.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
SETTING_ENVS = {"CITYPULSE_" + name.upper() for name in Settings.model_fields}
CITYPULSE_SERVICES = sorted(n for n, s in SERVICES.items()
                            if (s.get("command") or [None])[0] == "citypulse")

# which module registers the first word of a command (every stage is built)
OWNER = {"db": "citypulse.commands", "ingest": "ingest.cli", "registry": "ingest.cli",
         "twin": "twin.cli", "alerts": "analytics.cli", "dashboard": "dashboards.cli",
         "sim": "device_sim.cli", "devices": "ingest.credentials_cli",
         "commands": "control.cli", "sta": "standards.cli"}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _example_values() -> dict[str, str]:
    """The .env.example assignments, with dummy secrets where it leaves them empty."""
    out = {}
    for line in ENV_EXAMPLE.splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2) or f"secret-{m.group(1).lower()}-0123456789"
    return out


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?err}`` and ``$$``."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("-"):
            return arg
        if op and op.endswith("?"):
            raise KeyError(f"{name} is required: {arg}")
        return ""
    return _VAR.sub(sub, value).replace("$$", "$")


def test_all_services_present_with_image_or_build():
    want = {"db", "mqtt", "migrate", "collector", "twin", "alerts", "dashboard", "sim"}
    assert want <= set(SERVICES)
    for name, svc in SERVICES.items():
        assert svc.get("image") or svc.get("build"), name
    assert "timescaledb" in SERVICES["db"]["image"]
    assert "mosquitto:2" in SERVICES["mqtt"]["image"]
    assert SERVICES["sim"]["profiles"] == ["sim"]
    assert all(SERVICES[n].get("profiles") == ["sim"] for n in SERVICES if n.startswith("sim"))
    assert not any(SERVICES[n].get("profiles") for n in want - {"sim"})


def test_migrate_gates_the_services():
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["migrate"]["command"] == ["citypulse", "db", "migrate"]
    for name in ("collector", "twin", "alerts", "dashboard"):
        deps = SERVICES[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["db"]["condition"] == "service_healthy", name


def test_collector_can_scale_and_shares_one_subscription():
    c = SERVICES["collector"]
    assert "container_name" not in c and "ports" not in c and "hostname" not in c
    cmd = c["command"]
    assert cmd[:2] == ["citypulse", "ingest"]
    assert cmd[cmd.index("--share") + 1] == "collectors"
    # a spool per replica: an anonymous volume, never a named one shared by all replicas
    spool = c["environment"]["CITYPULSE_SPOOL_DIR"]
    assert spool in c["volumes"]


def test_healthchecks():
    for name in ("db", "mqtt", "collector", "dashboard"):
        assert SERVICES[name]["healthcheck"]["test"], name
    assert "pg_isready" in str(SERVICES["db"]["healthcheck"]["test"])
    assert "mosquitto_sub" in str(SERVICES["mqtt"]["healthcheck"]["test"])
    metrics_port = SERVICES["collector"]["command"][
        SERVICES["collector"]["command"].index("--metrics-port") + 1]
    assert f":{metrics_port}/metrics" in str(SERVICES["collector"]["healthcheck"]["test"])
    assert ":8050/" in str(SERVICES["dashboard"]["healthcheck"]["test"])


def test_named_volumes_declared_and_bind_mounts_exist():
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                if "/secrets/" not in src:  # deploy/secrets is written at deploy time
                    assert (ROOT / src).exists(), f"{name}: {src} missing"
            elif ":" in vol:
                used.add(src)
    assert used and used <= declared
    assert {"pgdata", "mqttdata"} <= used


@pytest.mark.parametrize("service", CITYPULSE_SERVICES)
def test_command_is_a_real_cli_command(service):
    cmd = [interpolate(c, _example_values()) for c in SERVICES[service]["command"]]
    words = []
    for tok in cmd[1:]:
        if not re.fullmatch(r"[a-z][a-z-]*", tok):
            break
        words.append(tok)
    owner = OWNER[words[0]]
    importlib.import_module(owner)  # a stage that fails to import fails here, loudly
    from citypulse.cli import app

    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"citypulse {' '.join(words)}: {result.output}"
    for opt in (t for t in cmd if t.startswith("--")):
        assert opt in result.output, f"citypulse {' '.join(words)} has no option {opt}"


def _service_env(svc: dict, values: dict[str, str]) -> dict[str, str]:
    return {k: interpolate(str(v), values) for k, v in (svc.get("environment") or {}).items()}


def test_citypulse_env_names_are_settings():
    names = set(re.findall(r"\bCITYPULSE_[A-Z0-9_]+", ENV_EXAMPLE))
    text = (ROOT / "docker-compose.yml").read_text()
    names |= set(re.findall(r"\bCITYPULSE_[A-Z0-9_]+", text))
    names |= set(re.findall(r"\bCITYPULSE_[A-Z0-9_]+", (ROOT / "Dockerfile").read_text()))
    assert names, "no CITYPULSE_ names found"
    assert names <= SETTING_ENVS, f"not settings: {sorted(names - SETTING_ENVS)}"


def test_every_required_variable_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    example = _example_values()
    for m in _VAR.finditer(text):
        name, op = m.group(1), m.group(2)
        if not op or op.endswith("?"):
            assert name in example, f"${{{name}}} has no default and is not in .env.example"


@pytest.mark.parametrize("service", CITYPULSE_SERVICES)
def test_service_environment_validates(service, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key in list(__import__("os").environ):
        if key.startswith("CITYPULSE_"):
            monkeypatch.delenv(key)
    env = _service_env(SERVICES[service], _example_values())
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    if "CITYPULSE_DATABASE_URL" in env:
        assert "@db:5432/citypulse" in s.database_url
        assert not s.database_url.startswith("postgresql://postgres:")  # never the superuser
    if "CITYPULSE_MQTT_URL" in env:
        assert s.mqtt.host == "mqtt" and s.mqtt.username and s.mqtt.password


def test_each_service_logs_in_as_its_own_role():
    values = _example_values()
    users = {n: _service_env(SERVICES[n], values).get("CITYPULSE_DATABASE_URL", "")
             .split("//")[1].split(":")[0] for n in ("collector", "twin", "dashboard", "migrate")}
    assert users == {"collector": "citypulse_collector_login", "twin": "citypulse_worker_login",
                     "dashboard": "citypulse_dashboard_login", "migrate": "citypulse_owner"}
    init = (ROOT / "deploy/postgres/initdb/50-citypulse-roles.sh").read_text()
    for user in users.values():
        assert f"CREATE ROLE {user} LOGIN" in init


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "pip install -c constraints.txt ." in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / src).exists(), src
    for pkg in ("citypulse", "ingest", "device_sim", "twin", "analytics", "dashboards",
                "sharing", "standards", "control"):
        assert f"COPY {pkg} " in text, pkg
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "**/*.so"} <= set(ignored)  # the image compiles its own
    # the collector's C pass is compiled in the image, and the build fails without it
    assert re.search(r"apt-get install [^\n]*\bgcc\b", text) and "ingest._fastrows" in text


def test_broker_config_refuses_anonymous():
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    lines = {ln.split()[0]: ln.split(None, 1)[1] for ln in conf.splitlines()
             if ln.strip() and not ln.startswith("#") and " " in ln}
    assert lines["allow_anonymous"] == "false"
    assert lines["password_file"] == "/mosquitto/auth/passwd"
    assert lines["acl_file"] == "/mosquitto/auth/acl"
    assert lines["persistence"] == "true"


def test_dashboard_uses_a_users_file_not_dev_users():
    env = SERVICES["dashboard"]["environment"]
    target = env["CITYPULSE_USERS_FILE"]
    assert any(v.split(":")[1] == target for v in SERVICES["dashboard"]["volumes"])
    assert "CITYPULSE_DASHBOARD_SECRET" in env and ":?" in env["CITYPULSE_DASHBOARD_SECRET"]

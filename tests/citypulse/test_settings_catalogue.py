import pytest

from citypulse.catalogue import DEVICE_KINDS, KINDS, MAX_SLOTS, kind, metric_rows
from citypulse.settings import ConfigError, load_settings


@pytest.mark.parametrize(("key", "value", "env"), [
    ("mqtt_url", "http://x", "CITYPULSE_MQTT_URL"),
    ("database_url", "mysql://x/y", "CITYPULSE_DATABASE_URL"),
    ("topic_prefix", "city/#", "CITYPULSE_TOPIC_PREFIX"),
    ("share_group", "a/b", "CITYPULSE_SHARE_GROUP"),
    ("batch_max_readings", 0, "CITYPULSE_BATCH_MAX_READINGS"),
    ("metrics_port", 70000, "CITYPULSE_METRICS_PORT"),
])
def test_bad_setting_names_the_key(key, value, env):
    with pytest.raises(ConfigError) as exc:
        load_settings(**{key: value})
    assert env in str(exc.value)


def test_env_is_read(monkeypatch):
    monkeypatch.setenv("CITYPULSE_BATCH_MAX_MS", "nope")
    with pytest.raises(ConfigError, match="CITYPULSE_BATCH_MAX_MS"):
        load_settings()
    monkeypatch.setenv("CITYPULSE_BATCH_MAX_MS", "50")
    assert load_settings().batch_max_ms == 50


def test_mqtt_url_parts():
    ep = load_settings(mqtt_url="mqtt://u:p%40ss@broker:1999").mqtt
    assert (ep.host, ep.port, ep.username, ep.password, ep.tls) == ("broker", 1999, "u", "p@ss", False)


def test_catalogue_sanity():
    required = {"traffic", "people", "logistics", "air", "water", "fire", "noise"}
    assert required <= set(KINDS)
    assert {"pump", "sign", "signal", "siren"} <= set(DEVICE_KINDS) - set(KINDS)
    for k in DEVICE_KINDS.values():
        assert 0 < len(k.metrics) <= MAX_SLOTS
        assert k.interval_s > 0
        names = [m.name for m in k.metrics]
        assert len(set(names)) == len(names)
        assert names[-2:] == ["battery_pct", "rssi_dbm"]
        for m in k.metrics:
            assert m.min < m.max and m.unit
            assert m.in_range(m.min) and m.in_range(m.max) and not m.in_range(m.max + 1)
    assert kind("traffic").slot_of["speed_kmh"] == 1
    with pytest.raises(KeyError, match="known"):
        kind("volcano")
    assert len(metric_rows()) == sum(len(k.metrics) for k in DEVICE_KINDS.values())


def test_command_catalogue():
    from citypulse.actuators import METHODS, ParamsError, method

    assert set(METHODS) == set(DEVICE_KINDS)
    assert all("set_interval" in ms and ms["set_interval"].shadow for ms in METHODS.values())
    start = method("pump", "start")
    assert start.risk == "medium" and start.precondition == "sump_not_dry"
    assert start.schema["properties"]["flow_m3_h"]["maximum"] == 2000
    assert start.validate(None) == {"flow_m3_h": 600.0}
    assert method("siren", "sound").risk == method("signal", "set_plan").risk == "high"
    with pytest.raises(ParamsError, match="text"):
        method("sign", "show").validate({"priority": "info"})
    with pytest.raises(ParamsError, match="force: Extra inputs"):
        method("pump", "stop").validate({"force": True})  # Extra inputs are not permitted
    with pytest.raises(KeyError, match="start, stop, set_interval"):
        method("pump", "explode")

"""Device simulator: city sensors that speak the public wire contract, incidents, record/replay.

Entry point: ``citypulse sim ...`` (device_sim/cli.py).  In: a sensor count and seed (deploy),
a deployment file, a broker URL, optional scenario YAML.  Out: a deployment Parquet file that
``citypulse registry load`` accepts, MQTT messages on ``{prefix}/v1/telemetry|gateway|status``,
an optional recording, and JSON summaries.  Library use::

    from device_sim.deploy import deploy                  # sensors on the shared city model
    from device_sim.behaviour import Fleet, due, readings # what they read, when
    from device_sim.scenario import load, expected_alerts # incidents and the ground truth
    from device_sim.run import RunConfig, run             # publish over MQTT (processes)
    from device_sim.replay import replay                  # re-send a recording

It imports only citypulse (shared, including the city model), never ingest or later stages.
"""

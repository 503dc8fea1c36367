"""The import graph follows the data flow (scripts/import_graph.py prints it)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
graph_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph_mod)

STAGES = ("ingest", "twin", "analytics", "dashboards")
# the city model is a foundation (citypulse/city/): nothing pending
PENDING: set[tuple[str, str]] = set()


def test_no_production_stage_imports_the_simulator_or_the_bench():
    edges = graph_mod.graph()
    for stage in set(STAGES + ("citypulse",) + graph_mod.LAYERS) - {"device_sim", "bench"}:
        assert (stage, "device_sim") not in edges, edges.get((stage, "device_sim"))
        assert (stage, "bench") not in edges, edges.get((stage, "bench"))


def test_no_arrow_goes_against_the_data_flow():
    back = set(graph_mod.back_arrows(graph_mod.graph()))
    assert back <= PENDING, sorted(back - PENDING)


def test_every_stage_command_module_is_imported_explicitly():
    from citypulse import cli

    names = {m.__name__ for m in cli._COMMAND_MODULES}
    assert {"ingest.cli", "twin.cli", "analytics.cli", "dashboards.cli", "device_sim.cli",
            "bench.cli"} <= names
    bench_cmds = {c.name for c in cli.bench_app.registered_commands}
    assert bench_cmds == {"sim", "ingest", "soak", "twin", "alerts", "dashboard", "web",
                          "share", "share-verify", "commands",
                          "city", "ngsi", "sta", "sta-mqtt", "hotpath", "copycost"}

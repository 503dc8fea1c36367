"""Benchmarks, the soak and the demo-data seed: the harness that drives every stage.

In: a private broker and database (or the URLs given), the simulator as the load.  Out: JSON
figures (``citypulse bench ...``, see :mod:`bench.cli`) and, for tests, the same drivers:
:mod:`bench.ingest` (load through the collector), :mod:`bench.alerts` (scenarios through the
alert engine), :mod:`bench.twin`, :mod:`bench.dashboard`, :mod:`bench.sim`, :mod:`bench.soak`
and :mod:`bench.seed` (a seeded store for the dashboards).  This package may import every
stage; no stage imports it.
"""

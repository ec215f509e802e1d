"""The run registry: run directories written by :class:`predstore.RegistryLogger`, indexed.

Python API::

    import predstore.registry as registry

    report = registry.scan("runs")                 # incremental; full=True rebuilds
    with registry.Registry.open("runs") as reg:
        reg.ls(status="running", tags=["sweep:42"], sort="summary.val_loss", limit=10)
        reg.best("val_loss", mode="min")
        reg.show("20250131-120000-3fa2c1")
        reg.export("runs.parquet")

Every listing is a :class:`polars.DataFrame`. See ``docs/registry.md`` for
the files of a run directory, the cache and the query syntax.
"""

from predstore.registry.index.records import Problem, RunRecord, read_run_dir
from predstore.registry.index.scanner import ScanReport, scan
from predstore.registry.index.sqlite_cache import CACHE_NAME, default_cache_path
from predstore.registry.query.field_sql import STATS, parse_condition, parse_field
from predstore.registry.query.registry import BASE_COLUMNS, QUERY_STATUSES, Registry, RunDetail
from predstore.registry.run_writer import RunWriter
from predstore.registry.rundir.files import STALE, STATUSES
from predstore.registry.rundir.json_schemas import load_schema, schema_errors
from predstore.registry.rundir.liveness import DEFAULT_STALE_AFTER, effective_status
from predstore.registry.rundir.media import read_media_index

__all__ = [
    "BASE_COLUMNS",
    "CACHE_NAME",
    "DEFAULT_STALE_AFTER",
    "QUERY_STATUSES",
    "STALE",
    "STATS",
    "STATUSES",
    "Problem",
    "Registry",
    "RunDetail",
    "RunRecord",
    "RunWriter",
    "ScanReport",
    "default_cache_path",
    "effective_status",
    "load_schema",
    "parse_condition",
    "parse_field",
    "read_media_index",
    "read_run_dir",
    "scan",
    "schema_errors",
]

"""Reading a dataset with Ray tasks under storage's one rule: the files of a published dataset
are read in parallel, each checked against its manifest entry (size, sha256) where it is read.

`storage.plan_read` decides what may be read (a manifest's files, a file the user named, a
plain folder; never a crashed run folder); this module only spreads the reading. Credentials
from a config travel as `credentials.share` describes, never in task arguments.
"""

from __future__ import annotations

import pyarrow as pa

from synthrec import storage
from synthrec.config import StorageConfig
from synthrec.distributed.credentials import WorkerStorage, share
from synthrec.errors import SynthrecError


def _read_part(uri: str, entry: storage.FileEntry, shared: WorkerStorage, columns) -> pa.Table:
    return storage.read_part(uri, entry, shared.resolve(), columns)


def read_table_ray(
    uri: str,
    storage_cfg: StorageConfig | None = None,
    columns: list[str] | None = None,
    num_cpus: float = 0.25,
) -> pa.Table:
    """`storage.read_table`, with a published dataset's parts read and checked in parallel Ray
    tasks (Ray must be connected). Files and plain folders are read here, on the caller."""
    import ray

    cfg = storage_cfg or StorageConfig()
    plan = storage.plan_read(uri, cfg)
    if plan.manifest is None or len(plan.manifest.files) == 1:
        return storage.read_plan(plan, cfg, columns)
    shared = share(cfg)  # owns the secrets' object until the reads are done
    task = ray.remote(num_cpus=num_cpus)(_read_part)
    refs = [task.remote(plan.uri, e, shared, columns) for e in plan.manifest.files]
    try:
        tables = ray.get(refs)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, SynthrecError):
            raise err.cause from None  # the storage layer's message, not a remote traceback
        raise
    return storage.check_row_count(uri, plan.manifest, pa.concat_tables(tables))

"""The cluster with an object store as the storage root (moto's S3 server on 127.0.0.1):
workers upload their shards under ``_shards/``, the coordinator publishes each partition with
the object-store protocol (marker last), and the rows equal the in-process run's."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FileSelector

from tests.cluster.conftest import DATASETS, END, START, YEAR, decoded, partition_files
from tests.ops.test_object_storage import BUCKET, CREDENTIALS, s3_server  # noqa: F401

pytestmark = pytest.mark.timeout(600)


def test_cluster_run_on_an_object_store(make_cluster, s3_server, in_process):  # noqa: F811
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.endpoint}
    cluster = make_cluster(workers=2, env=env)
    root = f"s3://{BUCKET}/cluster"
    done = subprocess.run(
        [sys.executable, "-m", "engine_core.cli", "run", "--world", "tiny", "--scenario",
         "baseline", "--start", START, "--end", END, "--out", root, "--quiet",
         "--scheduler", cluster.scheduler_file, "--shards", "3"],
        capture_output=True, text=True, timeout=300, env={**s3_server.env(), **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fs = s3_server.filesystem()
    for dataset in DATASETS:
        infos = fs.get_file_info(FileSelector(f"{BUCKET}/cluster", recursive=True))
        prefix = f"/{dataset}/scenario=baseline/year={YEAR}/"
        files = sorted(i.path for i in infos if prefix in i.path and i.path.endswith(".parquet"))
        assert len(files) >= 3 and all("/_shards/" not in f for f in files)
        assert any(i.path.endswith(prefix + "_published.json") for i in infos)
        t = pa.concat_tables([pq.read_table(f, filesystem=fs) for f in files])
        got = pa.table({f.name: (t.column(f.name).cast(f.type.value_type)
                                 if pa.types.is_dictionary(f.type) else t.column(f.name))
                        for f in t.schema})
        want = decoded(partition_files(in_process, dataset))
        assert got.num_rows == want.num_rows > 0
        for name in want.column_names:
            assert got.column(name).equals(want.column(name)), f"{dataset}.{name} differs"
    # every shard was taken into its partition and removed
    left = fs.get_file_info(FileSelector(f"{BUCKET}/cluster/_shards", recursive=True,
                                         allow_not_found=True))
    assert not [i for i in left if i.path.endswith(".parquet")]

"""The whole catalog on object storage: ``data_root`` on a local S3-compatible server (moto).

One ``kedro run --env=demo --params data_root=s3://...`` feeds the end-to-end
test: every output lands in the bucket, the reporting pipeline reruns pinned
to older versions from it, and local ``data/`` holds nothing but the training
scratch files.
"""

from __future__ import annotations

import fsspec
import pytest

from image_recognition.common import storage
from tests.helpers import (
    DATA_OUTPUTS,
    S3_KEY,
    S3_REGION,
    SCRATCH_FILE,
    SHORT_TRAINING,
    s3_environment,
    s3_filesystem,
    s3_server,
    versioned_objects,
)

pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
pytest.importorskip("moto.moto_server.threaded_moto_server", reason="moto[server] is not installed")

BUCKET = "image-recognition-test"


@pytest.fixture(scope="module")
def endpoint():
    """A moto S3 server on 127.0.0.1 with an empty bucket; its URL."""
    with s3_server(BUCKET) as url:
        yield url


def test_data_store_credentials_go_to_the_data_roots_filesystem_only(endpoint, monkeypatch):
    monkeypatch.setattr(fsspec.config, "conf", {})
    options = {**S3_KEY, "client_kwargs": {"endpoint_url": endpoint, "region_name": S3_REGION}}
    storage.configure_data_store("data", options)  # a local root: nothing to configure
    assert fsspec.config.conf == {}
    storage.configure_data_store(f"s3://{BUCKET}/unit", options)
    assert set(fsspec.config.conf) == {"s3"}  # other protocols keep their own settings
    fs = fsspec.filesystem("s3", skip_instance_cache=True)  # as a dataset makes it, with no arguments
    fs.pipe_file(f"{BUCKET}/unit/hello.txt", b"hi")
    assert s3_filesystem(endpoint).cat_file(f"{BUCKET}/unit/hello.txt") == b"hi"
    with pytest.raises(TypeError, match="must be a mapping of fsspec storage options"):
        storage.configure_data_store(f"s3://{BUCKET}/unit", "key=secret")


@pytest.mark.slow
def test_demo_dag_with_data_root_on_s3_keeps_only_scratch_files_local(project, endpoint, no_aws_environment):
    # Kedro reads conf/local only when no --env is given: with --env=demo, credentials go in conf/demo.
    (project.root / "conf/demo/credentials.yml").write_text(
        "data_store:\n"
        f"  key: {S3_KEY['key']}\n"
        f"  secret: {S3_KEY['secret']}\n"
        "  client_kwargs:\n"
        f"    endpoint_url: {endpoint}\n"
        f"    region_name: {S3_REGION}\n"
    )
    root = f"{BUCKET}/demo-run"
    run = project.kedro("run", "--env=demo", "--params", f"data_root=s3://{root},{SHORT_TRAINING}")
    assert run.returncode == 0, run.stderr[-4000:]

    store = s3_filesystem(endpoint)
    keys = [key.removeprefix(root + "/") for key in store.find(root)]
    versions = versioned_objects(keys)  # <layer>/<name>/<version>/<name>; the archive cache is not versioned
    expected = [
        *DATA_OUTPUTS,
        *(f"06_models/{model}/checkpoint.pt" for model in ("simple_cnn", "cnn", "vit")),
        *(f"07_model_output/{model}/training_history.csv" for model in ("simple_cnn", "cnn", "vit")),
        *(f"08_reporting/{model}/metrics.json" for model in ("simple_cnn", "cnn", "vit")),
        "08_reporting/model_comparison.csv",
        "08_reporting/figures/learning_curves.json",
        "08_reporting/comparison_report.html",
    ]
    missing = [name for name in expected if len(versions.get(name, [])) != 1]
    assert not missing, (missing, keys)
    assert "01_raw/synthetic-cifar-10-python.tar.gz" in keys  # the archive cache is on the store too
    local = project.data_files()
    assert local and all(SCRATCH_FILE.fullmatch(path) for path in local), local

    # The reporting pipeline again, pinned to the first run's evaluation, read from the bucket;
    # this time the store is reached through the standard AWS variables, not credentials.yml.
    (project.root / "conf/demo/credentials.yml").unlink()
    first = versions["08_reporting/vit/metrics.json"][0]
    pins = ",".join(f"vit.{name}:{first}" for name in ("metrics", "training_history"))
    aws = s3_environment(endpoint)
    rebuilt = project.kedro(
        "run",
        "--env=demo",
        "--pipelines=reporting",
        f"--load-versions={pins}",
        "--params",
        f"data_root=s3://{root}",
        env=aws,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    store.invalidate_cache()
    reports = store.ls(f"{root}/08_reporting/comparison_report.html")
    assert len(reports) == 2, reports
    assert all(SCRATCH_FILE.fullmatch(path) for path in project.data_files())

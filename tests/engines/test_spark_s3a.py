"""What the spark engine hands Spark for an s3:// lake when the cluster provides hadoop-aws
(`spark_s3a`): the s3a settings from the lake's storage_options and s3a:// paths. hadoop-aws is
not installed here, so these check the settings and paths, and that Spark is asked for s3a://,
not a read through it."""

from __future__ import annotations

import pytest

from tests.support.workspace import s3_settings, workspace_settings
from transforms.cli.demo import FIRST_DAY, write_demo_workspace
from transforms.engines.spark import ENGINE, s3a_conf, session_conf
from transforms.engines.spark_tables import s3a_url
from transforms.errors import ConfigError
from transforms.ingest.step import ingest
from transforms.runs.materialize import evaluate
from transforms.storage.roots import Root

SEAWEED = {"endpoint_url": "http://127.0.0.1:8333", "key": "admin", "secret": "s3cret"}


def test_storage_options_of_an_s3_compatible_server_become_s3a_settings():
    assert s3a_conf(SEAWEED) == {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:8333",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.access.key": "admin",
        "spark.hadoop.fs.s3a.secret.key": "s3cret",
    }


def test_client_kwargs_region_token_and_addressing_style_are_read_too():
    conf = s3a_conf(
        {
            "client_kwargs": {"endpoint_url": "https://s3.eu.example.com", "region_name": "eu"},
            "config_kwargs": {"s3": {"addressing_style": "virtual"}},
            "key": "k",
            "secret": "s",
            "token": "t",
        }
    )
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "https://s3.eu.example.com"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "false"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu"
    assert conf["spark.hadoop.fs.s3a.session.token"] == "t"
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith(
        "TemporaryAWSCredentialsProvider"
    )
    path_style = s3a_conf({"config_kwargs": {"s3": {"addressing_style": "path"}}})
    assert path_style["spark.hadoop.fs.s3a.path.style.access"] == "true"


def test_no_storage_options_leave_hadoop_aws_its_defaults_and_credential_chain():
    assert s3a_conf({}) == {"spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}


def test_lake_paths_are_read_as_s3a():
    assert s3a_url("s3://bucket/lake/people/part-1.parquet") == (
        "s3a://bucket/lake/people/part-1.parquet"
    )
    assert s3a_url("s3a://bucket/lake/x.parquet") == "s3a://bucket/lake/x.parquet"


def s3_lake(tmp_path, **update):
    return workspace_settings(tmp_path).model_copy(
        update={"lake": "s3://bucket/segments/lake", "storage_options": SEAWEED, **update}
    )


def test_check_accepts_an_s3_lake_only_with_spark_s3a(tmp_path):
    with pytest.raises(ConfigError) as refused:
        ENGINE.check(s3_lake(tmp_path))
    assert "spark_s3a: true" in str(refused.value) and "hadoop-aws" in str(refused.value)
    ENGINE.check(s3_lake(tmp_path, spark_s3a=True))
    ENGINE.check(workspace_settings(tmp_path).model_copy(update={"spark_s3a": True}))
    with pytest.raises(ConfigError, match="s3:// lakes only"):
        ENGINE.check(s3_lake(tmp_path, spark_s3a=True, lake="memory://lake"))


def test_a_session_for_an_s3_lake_with_spark_s3a_carries_the_s3a_settings(tmp_path):
    conf = session_conf(s3_lake(tmp_path, spark_s3a=True, spark_master="spark://h:7077"))
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8333"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert "spark.driver.host" not in conf  # executors elsewhere must reach the driver
    assert not any(k.startswith("spark.hadoop") for k in session_conf(s3_lake(tmp_path)))
    local = session_conf(workspace_settings(tmp_path).model_copy(update={"spark_s3a": True}))
    assert local["spark.driver.host"] == "127.0.0.1"
    assert not any(k.startswith("spark.hadoop") for k in local)
    overridden = s3_lake(
        tmp_path, spark_s3a=True, spark_conf={"spark.hadoop.fs.s3a.endpoint": "http://other"}
    )
    assert session_conf(overridden)["spark.hadoop.fs.s3a.endpoint"] == "http://other"


@pytest.mark.s3
@pytest.mark.spark
def test_an_s3_lake_reaches_spark_as_s3a_paths(spark, s3, prefix):
    """With spark_s3a, Spark is asked to read the lake's files as s3a://: without hadoop-aws
    (as here) it cannot load the S3A file system, which the error says with what to install."""
    settings = s3_settings(s3, prefix, spark_s3a=True)
    options = settings.storage_options
    write_demo_workspace(Root(settings.landing, options), Root(settings.inbox, options), 200)
    ingest(settings, FIRST_DAY)
    with pytest.raises(ConfigError) as refused:
        evaluate(settings, FIRST_DAY, engine="spark")
    assert "S3AFileSystem not found" in str(refused.value)
    assert "hadoop-aws" in refused.value.hint and "spark_s3a" in refused.value.hint

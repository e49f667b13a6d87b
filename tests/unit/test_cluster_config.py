"""cluster.yaml (Ray's schema, private by design), its security-group helper, the KubeRay
manifests, the image and the dependency lock."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import boto3
import jsonschema
import pytest
import yaml
from botocore.stub import ANY, Stubber

from synthrec.distributed import aws
from synthrec.errors import ClusterError, ConfigError

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
RAY_PRIVATE_PORTS = {
    6379: "GCS",
    8265: "dashboard/job API",
    10001: "Ray client",
    8076: "object manager",
    52365: "dashboard agent",
}
SERVE_PORT = 8000


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _rule_ports(rule: dict) -> set[int]:
    if rule.get("IpProtocol") == "-1":
        return set(range(0, 65536))
    return set(range(rule["FromPort"], rule["ToPort"] + 1))


def _cidrs(rule: dict) -> list[str]:
    return [r["CidrIp"] for r in rule.get("IpRanges", [])] + [
        r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])
    ]


def test_cluster_config_matches_the_schema_shipped_in_ray(cluster):
    # Located without importing ray (unit tests stay Ray-free).
    schema_path = (
        Path(importlib.util.find_spec("ray").origin).parent / "autoscaler" / "ray-schema.json"
    )
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft7Validator(schema).validate(cluster)
    assert cluster["provider"]["type"] == "aws"
    assert cluster["head_node_type"] in cluster["available_node_types"]


def test_cluster_config_schema_check_catches_a_typo(cluster):
    schema_path = (
        Path(importlib.util.find_spec("ray").origin).parent / "autoscaler" / "ray-schema.json"
    )
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["min_worker"] = 0  # typo of min_workers
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(schema_path.read_text()))


def test_cluster_config_opens_only_ssh_and_serve_to_configured_cidrs(cluster):
    rules = cluster["provider"]["security_group"]["IpPermissions"]
    assert rules, "the file must declare its ingress so that nothing else is assumed"
    opened: dict[int, set[str]] = {}
    for rule in rules:
        assert rule["IpProtocol"] == "tcp", f"only tcp port rules, got {rule}"
        assert not rule.get("UserIdGroupPairs") and not rule.get("PrefixListIds")
        for cidr in _cidrs(rule):
            assert cidr not in ("0.0.0.0/0", "::/0"), f"world ingress on {rule['FromPort']}"
            for port in _rule_ports(rule):
                opened.setdefault(port, set()).add(cidr)
    assert set(opened) == {22, SERVE_PORT}
    for port, name in RAY_PRIVATE_PORTS.items():
        assert port not in opened, f"{name} port {port} must stay private"
    assert len(opened[SERVE_PORT]) == 1, "Serve is open to one configured CIDR"
    assert aws.world_open(aws.ingress_rules(cluster, "sg-123")) == []  # what the helper will create


def test_cluster_config_keeps_the_job_api_private_with_token_auth(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    worker = " ".join(cluster["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in worker
    assert cluster["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    assert "export RAY_AUTH_MODE=token" in " ".join(cluster["setup_commands"])


def test_cluster_config_has_no_aws_keys_and_uses_instance_profiles(cluster):
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text)
    assert not re.search(r"aws_secret_access_key|aws_access_key_id|aws_session_token", text, re.I)
    for name, node_type in cluster["available_node_types"].items():
        assert node_type["node_config"]["IamInstanceProfile"], name


def test_cluster_config_gpu_workers_scale_from_zero_beside_cpu_workers(cluster):
    types = cluster["available_node_types"]
    gpu, cpu, head = types["gpu_worker"], types["cpu_worker"], types[cluster["head_node_type"]]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert re.match(r"(g|p)\d", gpu["node_config"]["InstanceType"]), "a GPU instance family"
    assert not re.match(r"(g|p)\d", cpu["node_config"]["InstanceType"])
    assert not re.match(r"(g|p)\d", head["node_config"]["InstanceType"])
    assert head["resources"] == {"CPU": 0}  # no tasks on the head


def test_cluster_config_installs_torch_before_synthrec_with_cpu_wheel_off_gpu(cluster):
    commands = cluster["setup_commands"]
    torch_at = next(i for i, c in enumerate(commands) if "torch==" in c)
    lock_at = next(i for i, c in enumerate(commands) if "requirements.lock" in c)
    synthrec_at = next(i for i, c in enumerate(commands) if "-e ~/synthrec" in c)
    assert torch_at < lock_at < synthrec_at
    assert "--require-hashes -r ~/synthrec/requirements.lock" in commands[lock_at]
    assert "--no-deps" in commands[synthrec_at]  # nothing unpinned comes with synthrec
    assert (
        "nvidia-smi" in commands[torch_at] and "download.pytorch.org/whl/cpu" in commands[torch_at]
    )
    assert cluster["file_mounts"]["~/synthrec"] == "."
    assert {".venv", ".git"} <= set(cluster["rsync_exclude"])


def test_cluster_config_pins_the_ami_by_id(cluster):
    for name, node_type in cluster["available_node_types"].items():
        assert re.fullmatch(r"ami-[0-9a-f]{8,17}", node_type["node_config"]["ImageId"]), name


def test_cluster_config_gives_every_node_the_serve_api_key(cluster):
    """Replicas run on any node and fail closed without the key: every node must have it."""
    assert cluster["file_mounts"]["~/.synthrec/api_key"] == "~/.synthrec/api_key"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in cluster[key] if "ray start" in c)
        assert 'SYNTHREC_API_KEY="$(cat ~/.synthrec/api_key)"' in start, key
    assert "~/.synthrec/api_key" in next(c for c in cluster["setup_commands"] if "chmod 600" in c)


def test_requirements_lock_pins_every_package_with_hashes():
    text = (REPO / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[a-z0-9])", text.split("\n", 4)[-1].strip())
    names = set()
    for block in blocks:
        first = block.splitlines()[0]
        assert re.match(r"^[a-z0-9._-]+(\[[a-z0-9,_-]+\])?==[\w.+-]+ \\$", first), first
        assert "--hash=sha256:" in block, first
        names.add(first.split("==")[0].split("[")[0])
    assert {"ray", "pyarrow", "pydantic", "fastapi", "numpy", "sympy"} <= names
    assert "torch" not in names  # installed on its own, pinned by version (CPU index)
    # Every runtime dependency of pyproject is locked: adding one means re-running the lock.
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.match(r"[A-Za-z0-9._-]+", d).group(0).lower().replace("_", "-") for d in deps}
    assert wanted - {"torch"} <= names, wanted - {"torch"} - names


def test_dockerfile_pins_the_base_by_digest_and_installs_the_lock():
    text = (REPO / "k8s" / "Dockerfile").read_text()
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert froms == ["FROM ${BASE}@${BASE_DIGEST}"]
    assert re.search(r"^ARG BASE_DIGEST$", text, re.M)  # no default: unpinned does not build
    assert "--require-hashes -r requirements.lock" in text
    assert "pip install --no-cache-dir --no-deps -e ." in text
    assert re.search(r"^USER 1000$", text, re.M)
    assert (REPO / "k8s" / "base_digest.sh").stat().st_mode & 0o111


# ------------------------------------------------------------------ security group helper


def _configured(cluster: dict) -> dict:
    data = copy.deepcopy(cluster)
    for node_type in data["available_node_types"].values():
        node_type["node_config"]["SubnetIds"] = ["subnet-0abc"]
    rules = data["provider"]["security_group"]["IpPermissions"]
    rules[0]["IpRanges"][0]["CidrIp"] = "10.20.0.0/16"
    rules[1]["IpRanges"][0]["CidrIp"] = "172.16.5.0/24"
    return data


def _ec2():
    return boto3.client(
        "ec2", region_name="us-west-2", aws_access_key_id="test", aws_secret_access_key="test"
    )


def test_aws_refuses_placeholders_before_calling_aws(cluster):
    with pytest.raises(ConfigError, match="SubnetIds"):
        aws.check_configured(cluster)
    data = _configured(cluster)
    data["provider"]["security_group"]["IpPermissions"][1]["IpRanges"][0]["CidrIp"] = (
        "198.51.100.0/24"
    )
    with pytest.raises(ConfigError, match="placeholder 198.51.100.0/24"):
        aws.check_configured(data)
    data["provider"]["security_group"]["IpPermissions"][1]["IpRanges"][0]["CidrIp"] = "0.0.0.0/0"
    with pytest.raises(ConfigError, match="opens tcp 8000-8000 from 0.0.0.0/0"):
        aws.check_configured(data)


def test_aws_creates_the_group_with_only_the_declared_rules(cluster):
    data, ec2 = _configured(cluster), _ec2()
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_subnets",
            {"Subnets": [{"SubnetId": "subnet-0abc", "VpcId": "vpc-1"}]},
            {"SubnetIds": ["subnet-0abc"]},
        )
        stub.add_response("describe_security_groups", {"SecurityGroups": []}, {"Filters": ANY})
        stub.add_response(
            "create_security_group",
            {"GroupId": "sg-9"},
            {
                "GroupName": "synthrec-ray",
                "VpcId": "vpc-1",
                "Description": ANY,
                "TagSpecifications": ANY,
            },
        )
        expected = [
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-9", "Description": ANY}]},
            *data["provider"]["security_group"]["IpPermissions"],
        ]
        stub.add_response(
            "authorize_security_group_ingress",
            {"Return": True},
            {"GroupId": "sg-9", "IpPermissions": expected},
        )
        assert aws.ensure_security_group(data, ec2) == ("sg-9", True)
        stub.assert_no_pending_responses()


def test_aws_refuses_an_existing_group_open_to_the_world(cluster):
    data, ec2 = _configured(cluster), _ec2()
    ray_made = {
        "GroupId": "sg-7",
        "GroupName": "synthrec-ray",
        "IpPermissions": [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    }
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_subnets", {"Subnets": [{"SubnetId": "subnet-0abc", "VpcId": "vpc-1"}]}
        )
        stub.add_response("describe_security_groups", {"SecurityGroups": [ray_made]})
        with pytest.raises(ClusterError, match="already allows tcp 22-22 from 0.0.0.0/0"):
            aws.ensure_security_group(data, ec2)


def test_aws_turns_client_errors_into_one_line(cluster):
    data, ec2 = _configured(cluster), _ec2()
    with Stubber(ec2) as stub:
        stub.add_client_error(
            "describe_subnets",
            "InvalidSubnetID.NotFound",
            "The subnet ID 'subnet-0abc' does not exist",
        )
        with pytest.raises(ClusterError, match="synthrec-ray in us-west-2: .*does not exist"):
            aws.ensure_security_group(data, ec2)


# ------------------------------------------------------------------ KubeRay manifests


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((REPO / "k8s" / name).read_text()) if d]


def test_k8s_raycluster_has_head_cpu_and_gpu_groups_with_token_auth():
    docs = _docs("raycluster.yaml")
    (ray_cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    assert ray_cluster["apiVersion"] == "ray.io/v1"
    spec = ray_cluster["spec"]
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["template"]["spec"]["containers"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]
    assert gpu["minReplicas"] == 0
    (container,) = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert (
        "nvidia.com/gpu"
        not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    )
    for group in [spec["headGroupSpec"], *groups.values()]:
        assert group["template"]["spec"]["serviceAccountName"] == "synthrec-train"  # IRSA
        for c in group["template"]["spec"]["containers"]:
            assert not any(e.get("name", "").startswith("AWS_") for e in c.get("env", []))


K8S_FILES = ("raycluster.yaml", "rayjob.yaml", "rayservice.yaml", "refresh-cronjob.yaml")


def _all_k8s_docs() -> list[dict]:
    return [d for name in K8S_FILES for d in _docs(name)]


def _cluster_specs() -> list[tuple[str, dict]]:
    """(name, RayCluster spec) of the training cluster and of the RayService's cluster."""
    out = []
    for doc in _all_k8s_docs():
        if doc["kind"] == "RayCluster":
            out.append((doc["metadata"]["name"], doc["spec"]))
        elif doc["kind"] == "RayService":
            out.append((doc["metadata"]["name"], doc["spec"]["rayClusterConfig"]))
    return out


def _pod_specs() -> list[tuple[str, dict]]:
    pods = []
    for name, spec in _cluster_specs():
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        pods += [(f"{name}/{g.get('groupName', 'head')}", g["template"]["spec"]) for g in groups]
    for doc in _all_k8s_docs():
        if doc["kind"] == "RayJob":
            pods.append((doc["metadata"]["name"], doc["spec"]["submitterPodTemplate"]["spec"]))
        elif doc["kind"] == "CronJob":
            pods.append((doc["metadata"]["name"], _cron_pod(doc)["spec"]))
    return pods


def _cron_pod(doc: dict) -> dict:
    return doc["spec"]["jobTemplate"]["spec"]["template"]


def test_k8s_refresh_cronjob_submits_a_valid_refresh_one_at_a_time():
    from synthrec.config import RefreshConfig, validate_config
    from synthrec.distributed.jobs import available_jobs

    docs = {d["kind"]: d for d in _docs("refresh-cronjob.yaml")}
    cron = docs["CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"  # the registry has one writer
    pod = _cron_pod(cron)
    assert pod["metadata"]["labels"] == {"synthrec/role": "submitter"}  # admitted to the job API
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["synthrec", "submit", "refresh"] and "refresh" in available_jobs()
    assert command[command.index("--address") + 1] == "http://synthrec-head-svc:8265"
    path = Path(command[command.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    config_map = docs["ConfigMap"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    config = yaml.safe_load(config_map["data"][path.name])
    validate_config(RefreshConfig, config, source="refresh-cronjob.yaml")
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    token = env["RAY_AUTH_TOKEN"]
    assert "value" not in token and token["valueFrom"]["secretKeyRef"]["name"] == "synthrec"


def test_k8s_exposes_only_serve_publicly():
    docs = _all_k8s_docs()
    for name, spec in _cluster_specs():
        assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", name
    public = []
    for service in (d for d in docs if d["kind"] == "Service"):
        if service["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort"):
            public.append(service["metadata"]["name"])
            ports = {p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
            assert ports == {SERVE_PORT}, f"{service['metadata']['name']} exposes {ports}"
            ranges = service["spec"].get("loadBalancerSourceRanges", [])
            assert ranges and "0.0.0.0/0" not in ranges
            annotations = service["metadata"].get("annotations", {})
            assert "service.beta.kubernetes.io/aws-load-balancer-ssl-cert" in annotations  # TLS
    assert public == ["synthrec-serve-public"]
    assert not any(d["kind"] == "Service" for d in _docs("raycluster.yaml"))  # training: none


def test_k8s_every_pod_runs_unprivileged():
    pods = _pod_specs()
    assert len(pods) == 7  # train head, cpu, gpu; serve head, workers; job and refresh submitters
    for name, pod in pods:
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        mounts = set()
        for c in pod["containers"]:
            cs = c["securityContext"]
            assert cs["allowPrivilegeEscalation"] is False, name
            assert cs["capabilities"]["drop"] == ["ALL"], name
            assert cs["readOnlyRootFilesystem"] is True, name
            mounts |= {m["mountPath"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, name  # Ray's session dir and spilling stay writable


def test_k8s_images_are_pinned_by_digest():
    for name, pod in _pod_specs():
        for c in pod["containers"]:
            assert re.fullmatch(r"[\w./-]+@sha256:[\w-]+", c["image"]), (name, c["image"])


def test_k8s_network_policies_cover_every_cluster_and_open_only_serve():
    policies = [d for d in _all_k8s_docs() if d["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["name"] for p in policies} == {"synthrec-train", "synthrec-serve"}
    selected = []
    for policy in policies:
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        selected.append(spec["podSelector"]["matchLabels"])
        for rule in spec["ingress"]:
            ports = {p["port"] for p in rule.get("ports", [])}
            peers = rule.get("from")
            if not peers:  # from anywhere: Serve's port alone, and only on the serving pods
                assert ports == {SERVE_PORT} and policy["metadata"]["name"] == "synthrec-serve"
                continue
            for peer in peers:
                assert "ipBlock" not in peer, policy["metadata"]["name"]
                assert peer.get("podSelector", {}).get("matchLabels"), peer  # named pods only
    # Each cluster's pods are selected: the training cluster by name, the serving one by label.
    assert {"ray.io/cluster": "synthrec"} in selected and {"synthrec/cluster": "serve"} in selected
    (service,) = [d for d in _docs("rayservice.yaml") if d["kind"] == "RayService"]
    for group in [
        service["spec"]["rayClusterConfig"]["headGroupSpec"],
        *service["spec"]["rayClusterConfig"]["workerGroupSpecs"],
    ]:
        assert group["template"]["metadata"]["labels"] == {"synthrec/cluster": "serve"}
    (job,) = _docs("rayjob.yaml")
    assert job["spec"]["submitterPodTemplate"]["metadata"]["labels"] == {
        "synthrec/role": "submitter"
    }


def test_k8s_training_writes_serving_only_reads():
    accounts = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        for d in _all_k8s_docs()
        if d["kind"] == "ServiceAccount"
    }
    assert set(accounts) == {"synthrec-train", "synthrec-serve"}
    assert accounts["synthrec-train"] != accounts["synthrec-serve"]
    for name, spec in _cluster_specs():
        expected = "synthrec-serve" if name == "synthrec-serve" else "synthrec-train"
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            assert group["template"]["spec"]["serviceAccountName"] == expected, name

    def actions(policy: str) -> set[str]:
        doc = json.loads((REPO / "k8s" / "iam" / policy).read_text())
        return {a for st in doc["Statement"] for a in st["Action"] if st["Effect"] == "Allow"}

    assert actions("serve-policy.json") == {"s3:GetObject", "s3:ListBucket"}
    assert {"s3:PutObject", "s3:DeleteObject"} <= actions("train-policy.json")


def test_k8s_serving_fails_closed_with_the_key_from_a_secret():
    (service,) = [d for d in _docs("rayservice.yaml") if d["kind"] == "RayService"]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token"
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for c in group["template"]["spec"]["containers"]:
            (key,) = [e for e in c["env"] if e["name"] == "SYNTHREC_API_KEY"]
            assert "value" not in key and key["valueFrom"]["secretKeyRef"]["name"]
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ours = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    assert [
        (a["name"], a["route_prefix"], a["import_path"]) for a in serve_config["applications"]
    ] == [(a["name"], a["route_prefix"], a["import_path"]) for a in ours["applications"]]
    for app in serve_config["applications"]:
        assert app["args"]["api_key_required"] is True, app["name"]
        assert not app["args"].get("insecure"), app["name"]


def test_k8s_rayjob_runs_a_job_entrypoint_on_the_cluster():
    (job,) = _docs("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "synthrec"}
    entry = job["spec"]["entrypoint"]
    module = re.search(r"python -m (synthrec\.jobs\.\w+)", entry).group(1)
    assert importlib.util.find_spec(module) is not None
    assert json.loads(re.search(r"--config '(\{.*\})'", entry).group(1))

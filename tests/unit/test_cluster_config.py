"""cluster.yaml (Ray's schema, private by design), its security-group helper, and the KubeRay
manifests."""

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
    synthrec_at = next(i for i, c in enumerate(commands) if "install -q -e ~/synthrec" in c)
    assert torch_at < synthrec_at
    assert (
        "nvidia-smi" in commands[torch_at] and "download.pytorch.org/whl/cpu" in commands[torch_at]
    )
    assert cluster["file_mounts"]["~/synthrec"] == "."
    assert {".venv", ".git"} <= set(cluster["rsync_exclude"])


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
        assert group["template"]["spec"]["serviceAccountName"] == "synthrec-ray"  # IRSA, no keys
        for c in group["template"]["spec"]["containers"]:
            assert not any(e.get("name", "").startswith("AWS_") for e in c.get("env", []))


def test_k8s_exposes_only_serve_publicly():
    docs = _docs("raycluster.yaml") + _docs("rayjob.yaml")
    (ray_cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    assert ray_cluster["spec"]["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
    for service in (d for d in docs if d["kind"] == "Service"):
        if service["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort"):
            ports = {p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
            assert ports == {SERVE_PORT}, f"{service['metadata']['name']} exposes {ports}"
            ranges = service["spec"].get("loadBalancerSourceRanges", [])
            assert ranges and "0.0.0.0/0" not in ranges


def test_k8s_rayjob_runs_a_job_entrypoint_on_the_cluster():
    (job,) = _docs("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "synthrec"}
    entry = job["spec"]["entrypoint"]
    script = re.search(r"/home/ray/synthrec/(jobs/\w+\.py)", entry).group(1)
    assert (REPO / script).is_file()
    assert json.loads(re.search(r"--config '(\{.*\})'", entry).group(1))

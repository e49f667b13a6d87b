"""The security group of cluster.yaml, created with exactly the rules the file declares.

Ray's launcher, when it creates the group named in `provider.security_group`, adds SSH from
0.0.0.0/0 besides the file's `IpPermissions`; when the group already exists with rules it
leaves it alone. So the group is created here before `ray up`, with all traffic within the
group plus the file's rules and nothing else. No printing; errors are ClusterError/ConfigError.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from synthrec.errors import ClusterError, ConfigError

WORLD = ("0.0.0.0/0", "::/0")
# Placeholder ranges (RFC 5737): a file that still has them is not configured yet.
DOCUMENTATION_NETS = [
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]


def load_cluster_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cluster config {path} does not exist; pass the path of cluster.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"cluster config {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"cluster config {path}: top level must be a mapping")
    return data


def declared_rules(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's `provider.security_group.IpPermissions`."""
    return list(cluster.get("provider", {}).get("security_group", {}).get("IpPermissions", []))


def ingress_rules(cluster: dict[str, Any], group_id: str) -> list[dict[str, Any]]:
    """What the group allows in: all traffic from members of the group, then the file's rules."""
    within = {
        "IpProtocol": "-1",
        "UserIdGroupPairs": [{"GroupId": group_id, "Description": "within the Ray cluster"}],
    }
    return [within, *declared_rules(cluster)]


def world_open(rules: list[dict[str, Any]]) -> list[str]:
    """Rules that admit any address, as 'tcp 22-22 from 0.0.0.0/0'."""
    found = []
    for rule in rules:
        sources = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
            r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])
        ]
        for source in sources:
            if source in WORLD:
                found.append(
                    f"{rule.get('IpProtocol')} "
                    f"{rule.get('FromPort', 'all')}-{rule.get('ToPort', 'all')} from {source}"
                )
    return found


def check_configured(cluster: dict[str, Any]) -> tuple[str, str, str]:
    """(region, group name, subnet id) once the file has no placeholders and no world ingress."""
    provider = cluster.get("provider", {})
    name = provider.get("security_group", {}).get("GroupName")
    if not name:
        raise ConfigError(
            "cluster.yaml: provider.security_group.GroupName is missing; name the group Ray should "
            "use"
        )
    head = cluster.get("available_node_types", {}).get(cluster.get("head_node_type"), {})
    subnets = head.get("node_config", {}).get("SubnetIds") or []
    if not subnets or "CHANGE-ME" in subnets[0]:
        raise ConfigError(
            "cluster.yaml: set the head node's SubnetIds to your subnet (it picks the VPC of the "
            "group)"
        )
    for rule in declared_rules(cluster):
        for source in rule.get("IpRanges", []):
            net = ipaddress.ip_network(source["CidrIp"], strict=False)
            if any(net.subnet_of(doc) for doc in DOCUMENTATION_NETS):
                raise ConfigError(
                    f"cluster.yaml: port {rule.get('FromPort')} is open to the placeholder {net}; "
                    "replace it with your CIDR (admin_cidr for SSH, serve_cidr for Serve)"
                )
    if opened := world_open(declared_rules(cluster)):
        raise ConfigError(f"cluster.yaml opens {', '.join(opened)}; give a narrower CIDR")
    return provider.get("region", "us-west-2"), name, subnets[0]


def ensure_security_group(cluster: dict[str, Any], ec2=None) -> tuple[str, bool]:
    """Create the group with exactly the file's rules, or check an existing one.

    Returns (group id, created)."""
    region, name, subnet = check_configured(cluster)
    if ec2 is None:
        import boto3

        ec2 = boto3.client("ec2", region_name=region)
    try:
        vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
        existing = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": [name]}]
        )["SecurityGroups"]
        if existing:
            group = existing[0]
            if opened := world_open(group.get("IpPermissions", [])):
                raise ClusterError(
                    f"security group {name} ({group['GroupId']}) already allows "
                    f"{', '.join(opened)}; "
                    "remove those rules (Ray adds SSH from anywhere when it creates the group) and "
                    "run again"
                )
            return group["GroupId"], False
        group_id = ec2.create_security_group(
            GroupName=name,
            VpcId=vpc,
            Description="synthrec Ray cluster (rules from cluster.yaml)",
            TagSpecifications=[
                {
                    "ResourceType": "security-group",
                    "Tags": [
                        {"Key": "ray-cluster-name", "Value": str(cluster.get("cluster_name"))}
                    ],
                }
            ],
        )["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=ingress_rules(cluster, group_id)
        )
        return group_id, True
    except ClusterError:
        raise
    except Exception as err:  # botocore ClientError, NoCredentialsError, EndpointConnectionError
        raise ClusterError(f"security group {name} in {region}: {err}") from None

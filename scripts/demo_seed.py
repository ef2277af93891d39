"""Seeds the demo account: a VPC with three instances in moto, and GuardDuty
findings about two of them in the emulator.

- web: SSH (22) open to the world, probed (Recon:EC2/PortProbeUnprotectedPort)
- win: every TCP port open to the world, RDP brute-forced (inbound)
- app: HTTPS from the private network only; no finding

Prints the group ids as `name=sg-...` lines for the demo script.
"""

import json
import os
import sys
import urllib.request

import boto3

DETECTOR = "0c4f8e6a2b1d4e7f9a3c5b7d9e1f2a4b"


def finding(fid, ftype, severity, instance, groups, action):
    return {
        "id": fid,
        "accountId": "123456789012",
        "region": "us-east-1",
        "type": ftype,
        "severity": severity,
        "title": f"{ftype} on {instance}",
        "description": "demo finding",
        "createdAt": "2026-11-28T10:00:00.000Z",
        "updatedAt": "2026-11-28T11:00:00.000Z",
        "resource": {
            "resourceType": "Instance",
            "instanceDetails": {
                "instanceId": instance,
                "networkInterfaces": [
                    {"securityGroups": [{"groupId": g, "groupName": g} for g in groups]}
                ],
            },
        },
        "service": {
            "detectorId": DETECTOR,
            "archived": False,
            "count": 12,
            "eventFirstSeen": "2026-11-28T10:00:00.000Z",
            "eventLastSeen": "2026-11-28T11:00:00.000Z",
            "resourceRole": "TARGET",
            "action": action,
        },
    }


def main():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]

    def group(name, permissions):
        gid = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=permissions)
        return gid

    def tcp(lo, hi, cidr):
        return {"IpProtocol": "tcp", "FromPort": lo, "ToPort": hi, "IpRanges": [{"CidrIp": cidr}]}

    web = group("web", [tcp(22, 22, "0.0.0.0/0"), tcp(443, 443, "0.0.0.0/0")])
    win = group("win", [tcp(0, 65535, "0.0.0.0/0")])
    app = group("app", [tcp(443, 443, "10.0.0.0/8")])

    def instance(gid):
        out = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                SubnetId=subnet, SecurityGroupIds=[gid])
        return out["Instances"][0]["InstanceId"]

    i_web, i_win, _i_app = instance(web), instance(win), instance(app)
    findings = [
        finding("d1a5e0c7b2f94e3a8c6d1b0f7e2a9c41", "Recon:EC2/PortProbeUnprotectedPort", 5.0, i_web, [web], {
            "actionType": "PORT_PROBE",
            "portProbeAction": {"blocked": False, "portProbeDetails": [
                {"localPortDetails": {"port": 22, "portName": "SSH"},
                 "remoteIpDetails": {"ipAddressV4": "198.51.100.23"}},
            ]},
        }),
        finding("e7b3c9d1a4f04b2e9d8c7a6b5f4e3d2c", "UnauthorizedAccess:EC2/RDPBruteForce", 8.0, i_win, [win], {
            "actionType": "NETWORK_CONNECTION",
            "networkConnectionAction": {
                "connectionDirection": "INBOUND", "protocol": "TCP", "blocked": False,
                "localPortDetails": {"port": 3389, "portName": "RDP"},
                "remotePortDetails": {"port": 51234, "portName": "Unknown"},
                "remoteIpDetails": {"ipAddressV4": "203.0.113.99"},
            },
        }),
    ]
    request = urllib.request.Request(
        os.environ["GDO_GUARDDUTY_URL"] + "/_emulator/findings",
        data=json.dumps({"findings": findings}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            sys.exit(f"the emulator refused the findings: {response.status}")
    for name, gid in (("web", web), ("win", win), ("app", app)):
        print(f"{name}={gid}")


if __name__ == "__main__":
    main()

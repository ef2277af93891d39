"""Prints the ingress rules of the demo's security groups, one line per rule."""

import sys

import boto3


def main():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    for arg in sys.argv[1:]:
        name, gid = arg.split("=", 1)
        rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [gid]}])
        print(f"  {name} ({gid})")
        lines = []
        for r in rules["SecurityGroupRules"]:
            if r["IsEgress"]:
                continue
            source = r.get("CidrIpv4") or r.get("CidrIpv6") or "?"
            ports = f'{r["FromPort"]}-{r["ToPort"]}' if r["FromPort"] != r["ToPort"] else str(r["FromPort"])
            managed = any(t["Key"] == "guardduty-operator/managed-by" for t in r.get("Tags", []))
            lines.append(f'    {r["IpProtocol"]}/{ports:<12} from {source:<16}{"  (added by the operator)" if managed else ""}')
        print("\n".join(sorted(lines)) or "    (no ingress rules)")


if __name__ == "__main__":
    main()

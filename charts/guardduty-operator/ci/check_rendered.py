"""Check one `helm template` rendering of the chart (scripts/test.sh runs it per value set).

    check_rendered.py SET RENDERED CRD_FILE OUT

SET names the value set (the expectations below); RENDERED is the output of
`helm template gdo charts/guardduty-operator --namespace security ...`; CRD_FILE
is the repository's crds/ file; OUT receives every rendered object except the
Prometheus Operator's kinds, for `kubernetes-validate --strict`, which knows only
built-in kinds. The ServiceMonitor and PrometheusRule are validated here instead,
against their CRDs' schemas (ci/monitoring.coreos.com_v1.schema.yaml) with unknown
fields refused, as kubernetes-validate --strict does for the built-in kinds.

Beyond the schemas, it checks what each toggle must render: the controller's
arguments, the Secret-reading RBAC per allowed namespace, the Lease name, the CRD
(equal to CRD_FILE), security contexts, the PDB, and the monitoring objects.
"""

import re
import sys
from pathlib import Path

import jsonschema
import yaml

RELEASE, NAMESPACE = "gdo", "security"
MONITORING = ("ServiceMonitor", "PrometheusRule")
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
LOG_LEVELS = {"error", "warn", "info", "debug", "trace"}
BUILT_IN_ALERTS = {
    "GuardDutyPolicyNotReady": "guardduty_operator_policy_ready",
    "GuardDutyOperatorAlertsFailing": 'guardduty_operator_alerts_total{result="failed"',
    "GuardDutyOperatorPassOverdue": "guardduty_operator_last_pass_timestamp_seconds",
    "GuardDutyOperatorDown": "guardduty_operator_leader",
}

# What each value set must render (ci/*-values.yaml; "default" is values.yaml alone).
EXPECT = {
    "default": {
        "fullname": "gdo-guardduty-operator",
        "args": [
            "controller", "--log-format", "json", "--log-level", "info",
            "--metrics-addr", "0.0.0.0:8080", "--lease-name", "gdo-guardduty-operator-leader",
            "--lease-duration", "15s", "--renew-deadline", "10s", "--retry-period", "2s",
            "--policy-namespace", "security",
        ],
        "crd": "keep", "secret_roles": ["security"], "cluster_secrets": False,
        "imds_disabled": True, "pod_uid": 65532, "pdb": None, "view_role": True,
        "monitoring": False,
    },
    "everything": {
        "fullname": "gdo-secops-operator",
        "args": [
            "controller", "--log-format", "text", "--log-level", "debug",
            "--metrics-addr", "0.0.0.0:8080", "--lease-name", "gdo-secops-operator-leader",
            "--lease-duration", "30s", "--renew-deadline", "20s", "--retry-period", "4s",
            "--policy-namespace", "team-a", "--policy-namespace", "team-b",
            "--events-queue-url",
            "https://sqs.us-east-1.amazonaws.com/123456789012/guardduty-findings",
            "--extra-flag", "value",
        ],
        "crd": "no-keep", "secret_roles": ["team-a", "team-b"], "cluster_secrets": False,
        "imds_disabled": False, "pod_uid": 65532, "pdb": {"minAvailable": 1},
        "view_role": True, "monitoring": True, "topology_spread": 2,
        "volume": "private-ca", "network_policy": True,
    },
    "no-monitoring-api": {
        "fullname": "gdo-secops-operator", "crd": "no-keep",
        "secret_roles": ["team-a", "team-b"], "cluster_secrets": False,
        "imds_disabled": False, "pdb": {"minAvailable": 1}, "view_role": True,
        "monitoring": False,
    },
    "openshift": {
        "fullname": "gdo-guardduty-operator", "crd": "keep", "secret_roles": [],
        "cluster_secrets": False, "imds_disabled": True, "pod_uid": None,
        "pdb": {"minAvailable": 1}, "view_role": True, "monitoring": False,
    },
    "all-namespaces": {
        "fullname": "guardduty", "crd": None, "secret_roles": [], "cluster_secrets": True,
        "policy_namespaces": ["*"], "imds_disabled": True, "pod_uid": 65532,
        "pdb": {"maxUnavailable": 1}, "view_role": False, "monitoring": False,
    },
}

failures = []


def check(ok, message):
    if not ok:
        failures.append(message)
    return ok


def integral(value):
    """YAML numbers as JSON sees them: 65535.0 and 65535 are the same number."""
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def strict(schema):
    """An openAPIV3Schema as JSON Schema: nullable and int-or-string understood, and
    unknown fields refused wherever the schema lists the fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    check(len(containers) == 1, f"one container expected, got {len(containers)}")
    return containers[0]


def flag_values(args, flag):
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def secret_rules(rules):
    return [
        r for r in rules or []
        if "" in r.get("apiGroups", []) and "secrets" in r.get("resources", [])
    ]


def main():
    name, rendered, crd_file, out = sys.argv[1:5]
    expect = EXPECT[name]
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        meta = d["metadata"]
        labels = meta.get("labels", {})
        check(labels.get("app.kubernetes.io/instance") == RELEASE,
              f"{d['kind']}/{meta['name']}: no app.kubernetes.io/instance label")
        check(labels.get("app.kubernetes.io/managed-by") == "Helm",
              f"{d['kind']}/{meta['name']}: no app.kubernetes.io/managed-by label")
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    check(len(keys) == len(set(keys)), f"duplicate objects: {sorted(keys)}")
    fullname = expect["fullname"]

    # The controller's arguments.
    (deployment,) = by_kind["Deployment"]
    check(deployment["metadata"]["name"] == fullname, f"Deployment name {deployment['metadata']['name']}")
    operator = container(deployment)
    args = operator["args"]
    check(args[0] == "controller", f"args start with {args[0]}")
    if "args" in expect:
        check(args == expect["args"], f"args {args} != {expect['args']}")
    check(set(flag_values(args, "--log-level")) <= LOG_LEVELS and len(flag_values(args, "--log-level")) == 1,
          f"--log-level {flag_values(args, '--log-level')}")
    for flag in ("--lease-duration", "--renew-deadline", "--retry-period"):
        values = flag_values(args, flag)
        check(len(values) == 1 and DURATION.match(values[0]), f"{flag} {values}")
    lease = f"{fullname}-leader"
    check(flag_values(args, "--lease-name") == [lease], f"--lease-name {flag_values(args, '--lease-name')}")
    namespaces = flag_values(args, "--policy-namespace")
    wanted = expect.get("policy_namespaces") or expect["secret_roles"] or [NAMESPACE]
    check(namespaces == wanted, f"--policy-namespace {namespaces} != {wanted}")

    # RBAC: the policies everywhere, Secrets only where policies are honoured, the Lease by name.
    cluster_roles = {r["metadata"]["name"]: r for r in by_kind.get("ClusterRole", [])}
    main_role = cluster_roles[fullname]
    check(any("guarddutypolicies/status" in r["resources"] for r in main_role["rules"]),
          "the ClusterRole does not patch policy status")
    check(bool(secret_rules(main_role["rules"])) == expect["cluster_secrets"],
          f"ClusterRole secrets rule: expected {expect['cluster_secrets']}")
    roles = by_kind.get("Role", [])
    secret_roles = sorted(r["metadata"]["namespace"] for r in roles if secret_rules(r["rules"]))
    check(secret_roles == sorted(expect["secret_roles"]), f"Secret Roles in {secret_roles}")
    for role in roles:
        for rule in secret_rules(role["rules"]):
            check(rule["verbs"] == ["get"], f"Role {role['metadata']['name']} secrets verbs {rule['verbs']}")
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind.get("RoleBinding", [])}
    for role in roles:
        check((role["metadata"]["namespace"], role["metadata"]["name"]) in bindings,
              f"Role {role['metadata']['namespace']}/{role['metadata']['name']} has no RoleBinding")
    lease_rules = [
        r for role in roles if role["metadata"]["namespace"] == NAMESPACE
        for r in role["rules"] if "leases" in r["resources"] and r.get("resourceNames")
    ]
    check([r["resourceNames"] for r in lease_rules] == [[lease]], f"Lease rules {lease_rules}")
    view = cluster_roles.get(f"{fullname}-view")
    check(bool(view) == expect["view_role"], f"view ClusterRole: expected {expect['view_role']}")
    if view:
        check(view["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-view") == "true",
              "view ClusterRole is not aggregated to view")
        check(view["rules"] == [{"apiGroups": ["guardduty.security.dev"], "resources": ["guarddutypolicies"],
                                 "verbs": ["get", "list", "watch"]}], f"view rules {view['rules']}")

    # The CRD: none, or exactly the one in crds/.
    crds = by_kind.get("CustomResourceDefinition", [])
    if expect["crd"] is None:
        check(not crds, "crds.enabled=false rendered a CRD")
    elif check(len(crds) == 1, f"{len(crds)} CRDs rendered"):
        reference = yaml.safe_load(Path(crd_file).read_text())
        crd = crds[0]
        check(crd["metadata"]["name"] == reference["metadata"]["name"], "CRD name")
        check(integral(crd["spec"]) == integral(reference["spec"]), f"the rendered CRD's spec differs from {crd_file}")
        keep = crd["metadata"].get("annotations", {}).get("helm.sh/resource-policy")
        check(keep == ("keep" if expect["crd"] == "keep" else None), f"CRD resource-policy {keep}")

    # The pod.
    env = {e["name"]: e.get("value") for e in operator.get("env", [])}
    check(("AWS_EC2_METADATA_DISABLED" in env) == expect["imds_disabled"],
          f"AWS_EC2_METADATA_DISABLED expected {expect['imds_disabled']}")
    pod = deployment["spec"]["template"]["spec"]
    pod_context, container_context = pod.get("securityContext", {}), operator.get("securityContext", {})
    check(pod_context.get("runAsNonRoot") is True and container_context.get("runAsNonRoot") is True, "runAsNonRoot")
    check(container_context.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(container_context.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation")
    if "pod_uid" in expect:
        uid = expect["pod_uid"]
        for key in ("runAsUser", "runAsGroup", "fsGroup"):
            check(pod_context.get(key) == uid, f"pod securityContext.{key} {pod_context.get(key)} != {uid}")
        if uid is None:
            check(not {"runAsUser", "runAsGroup"} & set(container_context), f"container ids {container_context}")
            check(not re.search(r":\s+null\s*$", Path(rendered).read_text(), re.M), "a null rendered")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if expect["pdb"] is None:
        check(not pdbs, "PDB rendered")
    elif check(len(pdbs) == 1, "no PDB"):
        spec = dict(pdbs[0]["spec"])
        selector = spec.pop("selector")
        check(spec == expect["pdb"], f"PDB {spec}")
        check(selector["matchLabels"] == deployment["spec"]["selector"]["matchLabels"], "PDB selector")
    if "topology_spread" in expect:
        spread = pod.get("topologySpreadConstraints", [])
        check(len(spread) == expect["topology_spread"], f"topology spread {spread}")
        check(all(c.get("labelSelector", {}).get("matchLabels") for c in spread), "spread without labelSelector")
    if "volume" in expect:
        check(expect["volume"] in [v["name"] for v in pod.get("volumes", [])], "extra volume")
        check(expect["volume"] in [m["name"] for m in operator.get("volumeMounts", [])], "extra mount")
    if "network_policy" in expect:
        check(len(by_kind.get("NetworkPolicy", [])) == 1, "NetworkPolicy")

    # The Prometheus Operator's kinds: their schemas, and what they point at.
    monitoring = [d for d in docs if d["kind"] in MONITORING]
    check(bool(monitoring) == expect["monitoring"], f"monitoring objects: expected {expect['monitoring']}")
    schemas = yaml.safe_load((Path(__file__).parent / "monitoring.coreos.com_v1.schema.yaml").read_text())
    for d in monitoring:
        check(d["apiVersion"] == "monitoring.coreos.com/v1", f"{d['kind']} apiVersion")
        for error in jsonschema.Draft7Validator(strict(schemas[d["kind"]])).iter_errors(d):
            check(False, f"{d['kind']}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
    if expect["monitoring"]:
        (service,) = by_kind["Service"]
        (monitor,) = by_kind["ServiceMonitor"]
        spec = monitor["spec"]
        check(spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(),
              "the ServiceMonitor selects no Service")
        check(spec["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]],
              "the ServiceMonitor looks in another namespace")
        ports = [p["name"] for p in service["spec"]["ports"]]
        check(all(e["port"] in ports for e in spec["endpoints"]), "ServiceMonitor port")
        (rule,) = by_kind["PrometheusRule"]
        rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        alerts = [r["alert"] for r in rules if "alert" in r]
        check(len(alerts) == len(set(alerts)), f"duplicate alerts {alerts}")
        selector = f'namespace="{NAMESPACE}", job="{service["metadata"]["name"]}"'
        for alert, metric in BUILT_IN_ALERTS.items():
            (r,) = [r for r in rules if r.get("alert") == alert] or [{}]
            expr = r.get("expr", "")
            check(metric in expr and selector in expr, f"{alert}: {expr!r} lacks {metric} or {selector}")
            check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"),
                  f"{alert}: unbalanced {expr!r}")
            check(r.get("labels", {}).get("severity") in ("warning", "critical"), f"{alert} severity")
        check(all(DURATION.match(r["for"]) for r in rules if "for" in r), "a rule's for")
        check("absent(guardduty_operator_leader{" in rule_expr(rules, "GuardDutyOperatorDown"), "no absent()")

    Path(out).write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in MONITORING]))
    if failures:
        print(f"chart value set {name}:", *failures, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
    print(f"chart value set {name}: {kinds}", file=sys.stderr)


def rule_expr(rules, alert):
    return next((r["expr"] for r in rules if r.get("alert") == alert), "")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Assertions on `terraform show -json PLANFILE` output for Strata's modules.

Usage: plan_check.py KIND PLAN_JSON
  KIND: openstack-floating_ip | openstack-loadbalancer | openstack-private | stackit
Exits 1 and says why when the plan lacks what the module promises.
"""
import json
import sys


def resources(plan):
    out = []

    def walk(module):
        out.extend(module.get("resources", []))
        for child in module.get("child_modules", []):
            walk(child)

    walk(plan["planned_values"]["root_module"])
    return out


def by_type(rs, t):
    return [r for r in rs if r["type"] == t]


def fail(msg):
    print(f"plan_check: {msg}")
    sys.exit(1)


def check_openstack(plan, mode):
    rs = resources(plan)
    actions = {tuple(c["change"]["actions"]) for c in plan["resource_changes"]}
    if actions != {("create",)}:
        fail(f"a fresh plan should only create, got {actions}")
    rules = [r["values"] for r in by_type(rs, "openstack_networking_secgroup_rule_v2")]
    ports = {(v.get("protocol"), v.get("port_range_min"), v.get("port_range_max")) for v in rules}
    need = {
        ("tcp", 6443, 6443): "kube-apiserver",
        ("tcp", 2379, 2380): "etcd",
        ("tcp", 10250, 10250): "kubelet",
        ("tcp", 10256, 10256): "kube-proxy health",
        ("tcp", 30000, 32767): "NodePort tcp",
        ("udp", 30000, 32767): "NodePort udp",
        ("tcp", 179, 179): "Calico BGP",
    }
    for key, what in need.items():
        if key not in ports:
            fail(f"no security group rule for {what} {key}")
    if not any(v.get("protocol") == "ipip" for v in rules):
        fail("no security group rule for Calico's IP-in-IP (protocol ipip)")
    if any(v.get("protocol") == "udp" and v.get("port_range_min") == 8472 for v in rules):
        fail("flannel's VXLAN port is still open")
    for v in rules:
        if v.get("direction") != "ingress" or v.get("ethertype") != "IPv4":
            fail(f"unexpected rule {v}")
    # Nothing the module opens may be world-reachable except the API.
    for v in rules:
        if v.get("remote_ip_prefix") == "0.0.0.0/0" and v.get("port_range_min") != 6443:
            fail(f"rule open to the world: {v}")
    instances = by_type(rs, "openstack_compute_instance_v2")
    names = sorted(i["values"]["name"] for i in instances)
    if not any(n.endswith("-control-plane") for n in names):
        fail(f"no control-plane instance in {names}")
    workers = [n for n in names if "-worker-" in n]
    if len(workers) < 1:
        fail(f"no worker instance in {names}")
    for i in instances:
        nets = i["values"].get("network") or []
        if len(nets) != 1:
            fail(f"{i['address']} should have exactly one network (its port)")
        if i["values"].get("security_groups"):
            fail(f"{i['address']} sets security_groups; they belong on its port")
    lbs = by_type(rs, "openstack_lb_loadbalancer_v2")
    fips = by_type(rs, "openstack_networking_floatingip_v2")
    assoc = by_type(rs, "openstack_networking_floatingip_associate_v2")
    if mode == "floating_ip" and (lbs or len(fips) != 1 or len(assoc) != 1):
        fail("floating_ip mode: expected one floating IP bound to the control plane and no load balancer")
    if mode == "loadbalancer":
        listeners = by_type(rs, "openstack_lb_listener_v2")
        if len(lbs) != 1 or len(listeners) != 1 or len(fips) != 1:
            fail("loadbalancer mode: expected a load balancer, a listener and a floating IP")
        if listeners[0]["values"]["protocol_port"] != 6443:
            fail("loadbalancer mode: listener not on 6443")
        if len(by_type(rs, "openstack_lb_member_v2")) != 1 or len(by_type(rs, "openstack_lb_monitor_v2")) != 1:
            fail("loadbalancer mode: expected a pool member and a health monitor")
    if mode == "private" and (lbs or fips):
        fail("private mode: expected neither load balancer nor floating IP")
    for t in ["openstack_networking_network_v2", "openstack_networking_subnet_v2", "openstack_networking_router_v2",
              "openstack_networking_router_interface_v2", "openstack_compute_keypair_v2"]:
        if len(by_type(rs, t)) != 1:
            fail(f"expected one {t}")
    outputs = plan["planned_values"].get("outputs", {})
    for o in ["api_server_url", "kubeconfig_command"]:
        if o not in outputs and mode == "floating_ip":
            fail(f"missing output {o}")
    return len(rs)


def check_stackit(plan):
    rs = resources(plan)
    cluster = by_type(rs, "stackit_ske_cluster")
    if len(cluster) != 1:
        fail("expected one SKE cluster")
    c = cluster[0]["values"]
    if not c.get("node_pools"):
        fail("SKE cluster without node pools")
    m = c.get("maintenance") or {}
    if not (m.get("start") and m.get("end")):
        fail("SKE cluster without maintenance window")
    acl = (c.get("extensions") or {}).get("acl") or {}
    if acl.get("enabled") is not True or not acl.get("allowed_cidrs"):
        fail(f"ACL extension not enabled with CIDRs: {acl}")
    if not c.get("kubernetes_version_min"):
        fail("no kubernetes_version_min")
    for t, n in [("stackit_ske_kubeconfig", 1), ("stackit_dns_zone", 1), ("stackit_public_ip", 1),
                 ("stackit_objectstorage_bucket", 1), ("stackit_objectstorage_credentials_group", 1),
                 ("stackit_objectstorage_credential", 1)]:
        if len(by_type(rs, t)) != n:
            fail(f"expected {n} {t}")
    zone = by_type(rs, "stackit_dns_zone")[0]["values"]
    if not zone["dns_name"].endswith(".runs.onstackit.cloud"):
        fail(f"zone {zone['dns_name']} is not on the free STACKIT subdomain")
    records = by_type(rs, "stackit_dns_record_set")
    if not records or any(r["values"]["type"] != "A" for r in records):
        fail("expected A records for the Ingress")
    sensitive = plan["configuration"]["root_module"].get("outputs", {})
    for o in ["kubeconfig", "backup_credentials"]:
        if not sensitive.get(o, {}).get("sensitive"):
            fail(f"output {o} must be sensitive")
    # The state bucket and its key have a life cycle of their own (stackit-state).
    names = [b["values"]["name"] for b in by_type(rs, "stackit_objectstorage_bucket")]
    if any("tfstate" in n for n in names):
        fail(f"stackit-ske must not manage the state bucket: {names}")
    return len(rs)


def check_stackit_state(plan):
    rs = resources(plan)
    for t in ["stackit_objectstorage_bucket", "stackit_objectstorage_credentials_group",
              "stackit_objectstorage_credential"]:
        if len(by_type(rs, t)) != 1:
            fail(f"expected one {t}")
    # prevent_destroy lives in the configuration, not in planned values.
    conf = {r["address"]: r for r in plan["configuration"]["root_module"].get("resources", [])}
    for addr in ["stackit_objectstorage_bucket.state", "stackit_objectstorage_credential.state",
                 "stackit_objectstorage_credentials_group.state"]:
        if addr not in conf:
            fail(f"missing {addr}")
    outputs = plan["configuration"]["root_module"].get("outputs", {})
    if not outputs.get("state_credentials", {}).get("sensitive"):
        fail("output state_credentials must be sensitive")
    return len(rs)


def main():
    kind, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        plan = json.load(f)
    if kind.startswith("openstack-"):
        n = check_openstack(plan, kind.split("-", 1)[1])
    elif kind == "stackit":
        n = check_stackit(plan)
    elif kind == "stackit-state":
        n = check_stackit_state(plan)
    else:
        fail(f"unknown kind {kind}")
    print(f"plan_check: {kind}: {n} planned resources look right")


if __name__ == "__main__":
    main()

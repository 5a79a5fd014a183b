"""The netlink adapter on real links: discovery per CNI style, filters read back as written, others kept."""

from __future__ import annotations

import subprocess

import pytest

from sensor.adapters.netlink import CAPTURE_ALIAS, NetlinkHost
from sensor.core.plan import INGRESS, MIRROR, PASS, ActualState, MirrorTarget, pass_cidrs, plan, teardown
from sensor.errors import CaptureInterfaceError, InterfaceNotFoundError, NetlinkError
from sensor.settings import CaptureSettings
from tests.sensor.podnet import PodNet, ip


def host_for(net: PodNet, netns_dirs=("/var/run/netns",)) -> NetlinkHost:
    from pathlib import Path

    cap = CaptureSettings(interface=net.capture, peer=f"kz{net.token}p", mtu=65535, snaplen=65535)
    return NetlinkHost(cap, tuple(Path(d) for d in netns_dirs))


def apply_all(host: NetlinkHost, actions, names) -> None:
    for action in actions:
        host.apply(action, names)


def test_routed_pod_found_by_its_host_route(routed):
    (a,) = routed.add_many(["a"])
    with host_for(routed, netns_dirs=()) as host:
        found = host.resolve("shop/a", (a.ip,), host.links())
    assert (found.ifname, found.method) == (a.host_if, "routed")


def test_bridged_pod_found_by_neighbour_and_fdb(bridged):
    (a,) = bridged.add_many(["a"])
    mac = ip("-n", a.netns, "-j", "link", "show", "eth0").stdout.split('"address":"')[1].split('"')[0]
    # What a flannel node has once the pod has talked: a route to the pod CIDR via the bridge, a neighbour
    # entry for the pod IP and a learned fdb entry (installed statically here; no traffic leaves the host).
    ip("route", "add", f"{a.ip}/32", "dev", bridged.bridge)
    try:
        ip("neigh", "add", a.ip, "lladdr", mac, "dev", bridged.bridge)
        subprocess.run(["bridge", "fdb", "replace", mac, "dev", a.host_if, "master", "static"], check=True)
        with host_for(bridged, netns_dirs=()) as host:
            found = host.resolve("shop/a", (a.ip,), host.links())
    finally:
        ip("route", "del", f"{a.ip}/32", check=False)
    assert (found.ifname, found.method) == (a.host_if, "bridged")


def test_bridged_pod_without_neighbour_found_through_its_network_namespace(bridged):
    _, b = bridged.add_many(["a", "b"])
    with host_for(bridged) as host:
        found = host.resolve("shop/b", (b.ip,), host.links())
        assert (found.ifname, found.method) == (b.host_if, "netns")
        with pytest.raises(InterfaceNotFoundError, match=r"shop/x .*10\.254\.1\.1") as err:
            host.resolve("shop/x", ("10.254.1.1",), host.links())
    assert err.value.reason == "interface-not-found"


def test_filters_read_back_as_planned_and_foreign_ones_untouched(routed):
    a, b = routed.add_many(["a", "b"])
    subprocess.run(["tc", "qdisc", "add", "dev", b.host_if, "clsact"], check=True)
    foreign = [
        "tc",
        "filter",
        "add",
        "dev",
        b.host_if,
        "egress",
        "prio",
        "10",
        "u32",
        "match",
        "u32",
        "0",
        "0",
    ]
    subprocess.run([*foreign, "flowid", "1:1"], check=True)
    with host_for(routed) as host:
        capture = host.ensure_capture()
        links = host.links()
        assert links[capture].alias == CAPTURE_ALIAS
        index = {p.name: host.resolve(p.name, (p.ip,), links).ifindex for p in (a, b)}
        targets = [
            MirrorTarget(pod_key="shop/a", ifindex=index["a"], ifname=a.host_if, ips=(a.ip, "fd00:10::5")),
            MirrorTarget(pod_key="shop/b", ifindex=index["b"], ifname=b.host_if, ips=(b.ip,)),
        ]
        first = host.read_actual(set())
        assert first.filters == () and first.foreign_filters == {targets[1].ifindex: 1}
        assert first.foreign_prios == {targets[1].ifindex: {10}}
        the_plan = plan(targets, first, capture)
        apply_all(host, the_plan.actions, first.names)
        owned = {(targets[0].ifindex, a.host_if)}  # a's clsact is ours, b's was there before
        actual = host.read_actual(owned)
        assert set(actual.filters) == set(the_plan.desired)
        passes = {f.cidr for f in actual.filters if f.kind == PASS}
        assert "fd00:10::5/128" in passes and len(passes) in (2, 3)  # a and b collapse when aligned
        assert {f.target for f in actual.filters if f.kind == MIRROR} == {capture}
        assert plan(targets, actual, capture).actions == ()
        apply_all(host, teardown(actual).actions, actual.names)
        assert host.read_actual(owned) == ActualState(
            clsact=frozenset({targets[1].ifindex}), foreign_filters={targets[1].ifindex: 1},
            foreign_prios={targets[1].ifindex: {10}}, names=host.read_actual(owned).names,
        )  # fmt: skip
        assert host.remove_capture()
    assert "pref 10" in subprocess.run(["tc", "filter", "show", "dev", b.host_if, "egress"],
                                       capture_output=True, text=True).stdout  # fmt: skip


def test_capture_interface_settings_and_refusal_of_a_stranger(routed):
    with host_for(routed) as host:
        index = host.ensure_capture()
        assert host.ensure_capture() == index  # idempotent
        shown = ip("-d", "link", "show", routed.capture).stdout
        assert "mtu 65535" in shown and "UP" in shown
        assert "NOARP" in ip("link", "show", f"kz{routed.token}p").stdout
        assert "addrgenmode none" in shown and "inet6" not in ip("addr", "show", routed.capture).stdout
        assert host.remove_capture() and not host.remove_capture()
        ip("link", "add", routed.capture, "type", "veth", "peer", "name", f"kz{routed.token}x")
        with pytest.raises(CaptureInterfaceError, match="not created by the sensor"):
            host.ensure_capture()
        assert not host.remove_capture()  # never deletes what it did not create


def test_a_capture_interface_that_cannot_be_set_up_is_not_left_behind(routed):
    from dataclasses import replace

    with host_for(routed) as host:
        host.capture = replace(host.capture, mtu=10)  # below a veth's minimum: the kernel refuses
        with pytest.raises(NetlinkError, match=f"set {routed.capture} up"):
            host.ensure_capture()
        assert routed.capture not in ip("-br", "link").stdout
        host.capture = replace(host.capture, mtu=65535)
        assert host.ensure_capture() == host.capture_ifindex()  # the next start is not refused
        assert host.remove_capture()


def tc(*args: str) -> str:
    return subprocess.run(["tc", *args], capture_output=True, text=True, check=True).stdout


def test_foreign_filters_at_our_priorities_are_never_joined_or_deleted(routed):
    a, b, c = routed.add_many(["a", "b", "c"])
    tc("qdisc", "add", "dev", b.host_if, "clsact")
    tc("filter", "add", "dev", b.host_if, "egress", "prio", "61440", "protocol", "ip", "u32",
       "match", "ip", "dst", "10.99.0.1/32", "classid", "1:1")  # fmt: skip
    tc("qdisc", "add", "dev", c.host_if, "clsact")
    tc("filter", "add", "dev", c.host_if, "ingress", "prio", "65534", "protocol", "all", "u32",
       "match", "u32", "0", "0", "classid", "1:2")  # fmt: skip
    before = {p.host_if: (tc("filter", "show", "dev", p.host_if, "egress"),
                          tc("filter", "show", "dev", p.host_if, "ingress")) for p in (b, c)}  # fmt: skip
    with host_for(routed) as host:
        capture = host.ensure_capture()
        links = host.links()
        targets = [
            MirrorTarget(pod_key=p.name, ifindex=host.resolve(p.name, (p.ip,), links).ifindex,
                         ifname=p.host_if, ips=(p.ip,))
            for p in (a, b, c)
        ]  # fmt: skip
        first = host.read_actual(set())
        apply_all(host, plan(targets, first, capture).actions, first.names)
        owned = {(targets[0].ifindex, a.host_if)}
        actual = host.read_actual(owned)
        taken = {(targets[1].ifindex, 61440), (targets[2].ifindex, 65534)}
        assert not {(f.ifindex, f.prio) for f in actual.filters} & taken
        assert len(actual.filters) == 3 * (len(pass_cidrs(targets)) + 2)  # per device: passes, two mirrors
        assert plan(targets, actual, capture).actions == ()
        apply_all(host, teardown(actual).actions, actual.names)
        assert host.read_actual(owned).filters == ()
        assert host.remove_capture()
    after = {p.host_if: (tc("filter", "show", "dev", p.host_if, "egress"),
                         tc("filter", "show", "dev", p.host_if, "ingress")) for p in (b, c)}  # fmt: skip
    assert after == before  # theirs kept, ours gone, no empty group of ours left behind


def test_a_deleted_ingress_mirror_is_seen_missing_while_the_egress_one_remains(routed):
    (a,) = routed.add_many(["a"])
    with host_for(routed) as host:
        capture = host.ensure_capture()
        index = host.resolve("a", (a.ip,), host.links()).ifindex
        targets = [MirrorTarget(pod_key="a", ifindex=index, ifname=a.host_if, ips=(a.ip,))]
        first = host.read_actual(set())
        apply_all(host, plan(targets, first, capture).actions, first.names)
        listed = [line.split(" fh ")[1].split()[0] for line in tc("filter", "show", "dev", a.host_if,
                  "ingress").splitlines() if "flowid 4b5a" in line]  # fmt: skip
        assert listed  # our ingress mirror (the one added last, in the highest hash table)
        mirror = max(listed, key=lambda fh: int(fh.split(":")[0], 16))
        prio = next(line.split("pref ")[1].split()[0] for line in tc("filter", "show", "dev", a.host_if,
                    "ingress").splitlines() if f"fh {mirror} " in line)  # fmt: skip
        tc("filter", "del", "dev", a.host_if, "ingress", "prio", prio, "handle", mirror, "u32")
        actual = host.read_actual({(index, a.host_if)})
        repair = plan(targets, actual, capture).actions
        assert [(x.op, x.filter.direction, x.filter.kind) for x in repair] == [
            ("add-filter", INGRESS, MIRROR)
        ]
        apply_all(host, repair, actual.names)
        assert "Egress Mirror" in tc("filter", "show", "dev", a.host_if, "ingress")
        assert plan(targets, host.read_actual({(index, a.host_if)}), capture).actions == ()
        assert host.remove_capture()

"""The real sensor process on real network namespaces: exactly once, churn, drift, nothing left behind."""

from __future__ import annotations

import ipaddress
import re
import signal
import subprocess
import urllib.request
from collections import Counter

from scapy.all import IP, UDP, Raw

from tests.sensor.capture import Capture, icmp_echoes, payloads, tcp_segments
from tests.sensor.conftest import SENSOR, SensorProcess, pod_object
from tests.sensor.podnet import NetPod, ServiceNat, host_snapshot
from tests.support.fakeapi import wait_for

OURS = "pref 6"  # our priorities are 61440..65534: "pref 6xxxx" in tc's output


def hexip(ip: str) -> str:
    return f"{int(ipaddress.ip_address(ip)):08x}"


def tc_filters(dev: str, direction: str) -> str:
    return subprocess.run(
        ["tc", "filter", "show", "dev", dev, direction], capture_output=True, text=True
    ).stdout


def exchange(cap: Capture, a, b, tag: str, port: int, ident: int) -> dict:
    """Ping, TCP and UDP from a to b; returns what was captured of each."""
    a.run("ping", b.ip, "3", str(ident))
    server = b.spawn("tcp-serve", str(port))
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    a.run("tcp", b.ip, str(port), f"{tag}tcp")
    server.wait(10)
    a.run("udp", b.ip, "9999", f"{tag}udp", "4")
    packets = cap.sync(a, b.ip)
    return {
        "icmp": icmp_echoes(packets, ident),
        "tcp": tcp_segments(packets, port),
        "udp": payloads(packets, f"{tag}udp"),
    }


def assert_exactly_once(seen: dict) -> None:
    assert seen["icmp"] == {(t, s): 1 for t in (0, 8) for s in range(3)}, seen["icmp"]
    assert seen["tcp"] and set(seen["tcp"].values()) == {1}, seen["tcp"]
    assert sum("S" in key[6] for key in seen["tcp"]) == 2  # SYN and SYN-ACK, once each
    assert seen["udp"] == {f"{k}": 1 for k in (f"{seen['tag']}udp-{i}" for i in range(4))}, seen["udp"]


def test_routed_pods_mirrored_exactly_once_and_churn_followed(routed, api, sensors, tmp_path):
    a, b, c, d = routed.add_many(["a", "b", "c", "d"])
    labels = {"a": "web", "b": "web", "c": "db", "d": "other"}
    for pod in (a, b, c, d):
        api.add("pods", pod_object(pod, labels={"app": labels[pod.name]}))
    host = pod_object(NetPod(name="agent", netns="-", ip="192.0.2.2", host_if="-"), labels={"app": "web"})
    host["spec"]["hostNetwork"] = True
    api.add("pods", host)  # a hostNetwork pod: reported, not mirrored
    api.add(
        "pods",
        pod_object(NetPod(name="ghost", netns="g", ip="10.254.9.9", host_if="-"), labels={"app": "web"}),
    )
    other = NetPod(name="elsewhere", netns="e", ip="10.254.9.10", host_if="-")
    api.add("pods", pod_object(other, labels={"app": "web"}, node="other-node"))  # not this node's
    before = host_snapshot(routed.token)
    sensor = SensorProcess(tmp_path, api, routed, selection="{label_selector: 'app in (web)'}")
    sensors.append(sensor.start())
    sensor.wait_mirrored(2)
    assert sensor.metric("kubezeek_sensor_pods", state="host_network") == 1
    assert sensor.metric("kubezeek_sensor_pod_failures", reason="interface-not-found") == 1
    assert sensor.metric("kubezeek_sensor_pods", state="selected") == 3  # a, b, ghost
    local = (sensor.handoff / "local.zeek").read_text()
    assert "redef Site::local_nets += { 10.0.0.0/8, [fd00:10::]/108 };" in local
    assert 'redef KubeZeek::node_name = "node-test";' in local
    assert "KUBEZEEK_CAPTURE_INTERFACE=" + routed.capture in (sensor.handoff / "capture.env").read_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{sensor.port}/healthz", timeout=5) as r:
        assert r.status == 200

    with Capture(routed.capture) as cap:
        seen = exchange(cap, a, b, "ab", 8080, 101)  # both ends selected, same node
        c.run("udp", a.ip, "9999", "ca", "3")  # unselected -> selected
        c.run("udp", d.ip, "9999", "cd", "3")  # unselected -> unselected
        d.run("ping", c.ip, "2", "102")
        packets = cap.sync(a, b.ip)
    assert_exactly_once({**seen, "tag": "ab"})
    assert payloads(packets, "ca") == {f"ca-{i}": 1 for i in range(3)}
    assert not payloads(packets, "cd")
    assert not icmp_echoes(packets, 102)

    # A label change starts mirroring c, without a restart; c <-> a is then between two selected pods.
    api.modify("pods", pod_object(c, labels={"app": "web"}))
    sensor.wait_mirrored(3)
    with Capture(routed.capture) as cap:
        c.run("udp", d.ip, "9999", "cd2", "3")
        seen = exchange(cap, c, a, "ca2", 8081, 103)
        packets = cap.sync(c, a.ip)
    assert payloads(packets, "cd2") == {f"cd2-{i}": 1 for i in range(3)}
    assert_exactly_once({**seen, "tag": "ca2"})

    # A config change (the ConfigMap edited) applies without a restart: d's label now matches too.
    sensor.config.write_text(sensor.config.read_text().replace("'app in (web)'", "'app in (web,other)'"))
    sensor.wait_mirrored(4)

    # Opt-out by annotation, then a deleted pod: their filters go, the others' pass lists follow.
    api.modify("pods", pod_object(a, labels={"app": "web"}, annotations={"kubezeek.io/monitor": "false"}))
    api.delete("pods", "b", namespace="shop")
    sensor.wait_mirrored(2)
    wait_for(
        lambda: OURS not in tc_filters(a.host_if, "ingress") + tc_filters(b.host_if, "egress"), 10, "gone"
    )
    # c's egress passes only c's and d's addresses now (a and b are no longer mirrored at their veths).
    c_d = sorted(f"{hexip(p.ip)}/ffffffff" for p in (c, d))
    wait_for(
        lambda: sorted(re.findall(r"match (\S+) at 12", tc_filters(c.host_if, "egress"))) == c_d, 10, "passes"
    )

    # Drift: someone removes our ingress mirror; the reconcile loop puts it back.
    subprocess.run(["tc", "filter", "del", "dev", c.host_if, "ingress", "prio", "65534"], check=True)
    assert "mirred" not in tc_filters(c.host_if, "ingress")
    wait_for(lambda: "mirred" in tc_filters(c.host_if, "ingress"), 10, "ingress mirror repaired")

    assert sensor.stop(signal.SIGTERM) == 0
    assert host_snapshot(routed.token) == before, sensor.stderr[-3000:]
    assert not (sensor.handoff / "local.zeek").exists()


def test_bridged_pods_mirrored_once_and_cleanup_after_crash(bridged, api, sensors, tmp_path):
    a, b, c, d = bridged.add_many(["a", "b", "c", "d"])
    for pod in (a, b):
        api.add("pods", pod_object(pod, annotations={"kubezeek.io/monitor": "true"}))
    for pod in (c, d):
        api.add("pods", pod_object(pod))
    before = host_snapshot(bridged.token)
    sensor = SensorProcess(tmp_path, api, bridged, selection="{mode: opt-in}")
    sensors.append(sensor.start())
    sensor.wait_mirrored(2)
    with Capture(bridged.capture) as cap:
        seen = exchange(cap, a, b, "ab", 8080, 201)
        c.run("udp", b.ip, "9999", "cb", "3")
        c.run("udp", d.ip, "9999", "cd", "3")
        packets = cap.sync(a, b.ip)
    assert_exactly_once({**seen, "tag": "ab"})
    assert payloads(packets, "cb") == {f"cb-{i}": 1 for i in range(3)}
    assert not payloads(packets, "cd")

    # A crash leaves everything in place; `cleanup` finds it by its marks and the ledger.
    assert sensor.stop(signal.SIGKILL) == -signal.SIGKILL
    assert OURS in tc_filters(a.host_if, "ingress")
    dry = sensor.command("cleanup", "--dry-run")
    assert dry.returncode == 0 and "would del-clsact" in dry.stdout, dry.stderr  # our qdiscs go whole
    assert OURS in tc_filters(a.host_if, "ingress")
    done = sensor.command("cleanup")
    assert done.returncode == 0, done.stderr
    assert f"delete {bridged.capture}" in done.stdout
    assert host_snapshot(bridged.token) == before
    again = sensor.command("cleanup")
    assert again.returncode == 0 and "nothing to clean up" in again.stdout


def test_dry_run_prints_the_plan_and_touches_nothing(routed, api, tmp_path):
    a, b = routed.add_many(["a", "b"])
    for pod in (a, b):
        api.add("pods", pod_object(pod))
    before = host_snapshot(routed.token)
    sensor = SensorProcess(tmp_path, api, routed)
    out = sensor.command("run", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert f"mirror shop/a: label-selector via {a.host_if} (routed)" in out.stdout
    assert (
        f"add-filter {a.host_if} ingress prio 65534 mirror mirror -> {routed.capture} (to be created)"
        in out.stdout
    )
    assert f"add-filter {b.host_if} egress prio 61440 pass {a.ip}/32" in out.stdout
    assert host_snapshot(routed.token) == before
    assert not sensor.handoff.exists()


def test_rbac_refusal_exits_1_with_one_line_and_leaves_nothing(routed, api, tmp_path):
    api.fail_next(5, 403, path="/pods")
    sensor = SensorProcess(tmp_path, api, routed)
    out = sensor.command("run", "--once")
    assert out.returncode == 1
    assert (
        out.stderr.strip().splitlines()[-1].startswith("KubeForbiddenError: RBAC forbids list/watch of pods")
    )
    assert host_snapshot(routed.token) == {"links": ""}


def test_bad_config_exits_1_naming_the_key(tmp_path):
    config = tmp_path / "sensor.yaml"
    config.write_text("node_name: n\nselection: {label_selector: 'app in (web'}\n")
    out = subprocess.run(
        [str(SENSOR), "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("ConfigError: selection.label_selector:")


def segments_of(packets, *ports: int) -> Counter:
    """Every TCP segment touching one of `ports`, keyed so that a duplicate copy collides."""
    out: Counter = Counter()
    for port in ports:
        out.update(tcp_segments(packets, port))
    return out


def udp_copies(packets, mark: str) -> Counter:
    """(src, sport, dst, dport, payload) of every captured datagram whose payload carries `mark`."""
    return Counter(
        (p[IP].src, p[UDP].sport, p[IP].dst, p[UDP].dport, bytes(p[Raw].load).decode(errors="replace"))
        for p in packets
        if UDP in p and Raw in p and mark.encode() in bytes(p[Raw].load)
    )


def through_service(cap: Capture, a: NetPod, b: NetPod, service: ServiceNat, tag: str) -> dict:
    """TCP (80 -> b:8090) and UDP (5301 -> b:9999, echoed) from a to b through the service address; what
    was captured of them (UDP not on 53: scapy would parse it as DNS)."""
    server = b.spawn("tcp-serve", "8090")
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    a.run("tcp", service.ip, "80", f"{tag}tcp")
    server.wait(10)
    echo = b.spawn("udp-serve", "9999", "3")
    assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
    a.run("udp-ask", service.ip, "5301", f"{tag}udp", "3")
    echo.wait(10)
    packets = cap.sync(a, b.ip)
    tcp = Counter({k: n for k, n in segments_of(packets, 80, 8090).items() if a.ip in k[:2]})  # this client's
    return {"tcp": tcp, "udp": udp_copies(packets, f"{tag}udp")}


def test_pods_talking_through_a_cluster_ip_are_copied_once_as_the_client_sees_them(
    routed, service, api, sensors, tmp_path
):
    a, b, c = routed.add_many(["a", "b", "c"])
    for pod in (a, b, c):
        api.add("pods", pod_object(pod, labels={"app": "web" if pod is not c else "db"}))
    service.add("tcp", 80, b, 8090)
    service.add("udp", 5301, b, 9999)
    before = host_snapshot(routed.token)
    sensor = SensorProcess(tmp_path, api, routed, selection="{label_selector: 'app=web'}")
    sensors.append(sensor.start())
    sensor.wait_mirrored(2)
    assert sensor.metric("kubezeek_sensor_ct_filter", state="active") == 1
    assert "kubezeek_ct" in tc_filters(a.host_if, "ingress")

    with Capture(routed.capture) as cap:
        seen = through_service(cap, a, b, service, "svc")
        direct = exchange(cap, a, b, "ab", 8081, 301)  # the same pair, no service: still once each way
        echo = b.spawn("udp-serve", "9998", "3")
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        a.run("udp-ask", b.ip, "9998", "abecho", "3")
        echo.wait(10)
        # c is not mirrored: through the service, b's view (c -> b, b -> c) is what is copied, once.
        c_seen = through_service(cap, c, b, service, "csvc")
        packets = cap.sync(a, b.ip)

    # A's view of the service connection, every segment once: a -> service and service -> a only.
    tcp = seen["tcp"]
    assert tcp and set(tcp.values()) == {1}, tcp
    assert {(src, dst, sport, dport) for src, dst, sport, dport, *_ in tcp} == {
        (a.ip, service.ip, next(k[2] for k in tcp if k[0] == a.ip), 80),
        (service.ip, a.ip, 80, next(k[2] for k in tcp if k[0] == a.ip)),
    }, tcp
    assert sum("S" in key[6] for key in tcp) == 2  # SYN and SYN-ACK, once each
    assert any(key[0] == service.ip and key[7] == len("echo:svctcp") for key in tcp)  # the reply's data
    udp = seen["udp"]
    assert set(udp.values()) == {1}, udp
    assert sorted(payload for *_, payload in udp) == sorted(
        [f"svcudp-{i}" for i in range(3)] + [f"echo:svcudp-{i}" for i in range(3)]
    )
    for src, sport, dst, dport, payload in udp:
        if payload.startswith("echo:"):
            assert (src, sport, dst) == (service.ip, 5301, a.ip), udp
        else:
            assert (src, dst, dport) == (a.ip, service.ip, 5301), udp

    # Direct a <-> b on the same pair: exactly once both ways, the replies with b's own address.
    assert_exactly_once({**direct, "tag": "ab"})
    direct_udp = udp_copies(packets, "abecho")
    assert set(direct_udp.values()) == {1} and len(direct_udp) == 6, direct_udp
    assert {(src, dst) for src, _, dst, _, payload in direct_udp if payload.startswith("echo:")} == {
        (b.ip, a.ip)
    }

    # An unmirrored client: the server side is all there is to copy, each packet once, with b's address.
    c_tcp = c_seen["tcp"]
    assert c_tcp and set(c_tcp.values()) == {1}, c_tcp
    assert {(k[0], k[1]) for k in c_tcp} == {(c.ip, b.ip), (b.ip, c.ip)}, c_tcp
    assert set(c_seen["udp"].values()) == {1} and len(c_seen["udp"]) == 6, c_seen["udp"]

    assert sensor.stop(signal.SIGTERM) == 0
    assert host_snapshot(routed.token) == before, sensor.stderr[-3000:]


def test_without_the_conntrack_filter_a_cluster_ip_reply_is_copied_twice(
    routed, service, api, sensors, tmp_path
):
    """The documented limit when the filter is off (or the kernel cannot run it): both views of the reply."""
    a, b = routed.add_many(["a", "b"])
    for pod in (a, b):
        api.add("pods", pod_object(pod))
    service.add("udp", 5301, b, 9999)
    sensor = SensorProcess(tmp_path, api, routed, conntrack_filter="disabled")
    sensors.append(sensor.start())
    sensor.wait_mirrored(2)
    assert sensor.metric("kubezeek_sensor_ct_filter", state="disabled") == 1
    assert "bpf" not in tc_filters(a.host_if, "ingress")
    with Capture(routed.capture) as cap:
        echo = b.spawn("udp-serve", "9999", "1")
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        a.run("udp-ask", service.ip, "5301", "offudp", "1")
        echo.wait(10)
        packets = cap.sync(a, b.ip)
    replies = {(src, dst) for src, _, dst, _, payload in udp_copies(packets, "offudp") if "echo:" in payload}
    assert replies == {(b.ip, a.ip), (service.ip, a.ip)}
    assert sensor.stop(signal.SIGTERM) == 0


def test_a_pod_whose_tc_setup_fails_is_still_seen_once_at_the_mirrored_pods(routed, api, sensors, tmp_path):
    a, b, c = routed.add_many(["a", "b", "c"])
    subprocess.run(["tc", "qdisc", "add", "dev", c.host_if, "ingress"], check=True)  # no clsact possible
    for pod in (a, b, c):
        api.add("pods", pod_object(pod))
    before = host_snapshot(routed.token)
    sensor = SensorProcess(tmp_path, api, routed)
    sensors.append(sensor.start())
    sensor.wait_mirrored(2)
    wait_for(lambda: sensor.metric("kubezeek_sensor_pod_failures", reason="tc-failed") == 1, 10, "c failed")
    assert hexip(c.ip) not in tc_filters(a.host_if, "egress")  # c's packets are a's to copy
    with Capture(routed.capture) as cap:
        a.run("ping", c.ip, "3", "301")
        c.run("ping", b.ip, "3", "302")
        packets = cap.sync(a, c.ip)
    assert icmp_echoes(packets, 301) == {(t, s): 1 for t in (0, 8) for s in range(3)}
    assert icmp_echoes(packets, 302) == {(t, s): 1 for t in (0, 8) for s in range(3)}
    last = sensor.metric("kubezeek_sensor_last_reconcile_timestamp_seconds")
    wait_for(lambda: sensor.metric("kubezeek_sensor_last_reconcile_timestamp_seconds") > last + 1.5, 10)
    warned = [line for line in sensor.stderr.splitlines() if "WARNING" in line and c.host_if in line]
    assert len(warned) == 1 and "another ingress qdisc" in warned[0], warned  # once, saying why
    assert sensor.stop(signal.SIGTERM) == 0
    assert host_snapshot(routed.token) == before, sensor.stderr[-3000:]

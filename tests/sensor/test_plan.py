"""Desired vs actual mirror state: the plan reaches the desired filters, is idempotent, never duplicates."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.core.plan import (
    CT,
    EGRESS,
    INGRESS,
    MIRROR,
    PASS,
    PRIO_FIRST,
    PRIO_MIRROR,
    ActualState,
    MirrorTarget,
    TcFilter,
    pass_cidrs,
    plan,
    teardown,
)

KZ0 = 99


def target(i: int, *ips: str) -> MirrorTarget:
    return MirrorTarget(pod_key=f"ns/p{i}", ifindex=i, ifname=f"veth{i}", ips=ips or (f"10.0.0.{i}",))


def apply(actual: ActualState, actions, owned_new=True) -> ActualState:
    """A working model of the kernel side, for checking plans (same effects as NetlinkHost.apply and the
    conntrack filter's map)."""
    clsact, owned, filters = set(actual.clsact), set(actual.owned_clsact), list(actual.filters)
    keys = set(actual.ct_keys)
    for a in actions:
        if a.op == "add-ct-key":
            assert a.ip not in keys
            keys.add(a.ip)
        elif a.op == "del-ct-key":
            keys.remove(a.ip)
        elif a.op == "add-clsact":
            assert a.ifindex not in clsact
            clsact.add(a.ifindex)
            owned.add(a.ifindex)
        elif a.op == "del-clsact":
            clsact.discard(a.ifindex)
            owned.discard(a.ifindex)
            filters = [f for f in filters if f.ifindex != a.ifindex]
        elif a.op == "add-filter":
            assert a.filter.ifindex in clsact
            slot = (a.filter.ifindex, a.filter.direction, a.filter.prio)
            assert slot not in {(f.ifindex, f.direction, f.prio) for f in filters}, f"prio reused: {a}"
            filters.append(a.filter)
        elif a.op == "del-filter":
            filters.remove(a.filter)
    return ActualState(clsact=frozenset(clsact), owned_clsact=frozenset(owned), filters=tuple(filters),
                       foreign_filters=actual.foreign_filters, ct_keys=frozenset(keys))  # fmt: skip


def mirrored_copies(filters, src_ip: str, src_if: int, dst_if: int) -> int:
    """How many copies of one packet from src to dst reach kz0 with these filters in place."""
    copies = int(any(f.ifindex == src_if and f.direction == INGRESS and f.kind == MIRROR for f in filters))
    for f in sorted(
        (f for f in filters if f.ifindex == dst_if and f.direction == EGRESS), key=lambda f: f.prio
    ):
        if f.kind == PASS and ipaddress.ip_address(src_ip) in ipaddress.ip_network(f.cidr):
            break  # a match without action ends classification: not copied here
        if f.kind == MIRROR:
            copies += 1
            break
    return copies


SERVICE_IP = "10.96.0.10"


def _first_match(filters, ifindex: int, direction: str, skips) -> int:
    """1 if the chain of `ifindex`/`direction` ends in a mirror for this packet, 0 if something before it
    (`skips(filter)`) ends classification or there is no mirror."""
    chain = sorted(
        (f for f in filters if f.ifindex == ifindex and f.direction == direction), key=lambda f: f.prio
    )
    for f in chain:
        if skips(f):
            return 0
        if f.kind == MIRROR:
            return 1
    return 0


def nat_reply_copies(state: ActualState, server_if: int, client_ip: str, client_if: int) -> int:
    """Copies of the reply of a connection from client to server through a service (DNAT): it leaves the
    server as server -> client and reaches the client un-NATed as service -> client."""
    at_server = _first_match(
        state.filters, server_if, INGRESS, lambda f: f.kind == CT and client_ip in state.ct_keys
    )
    at_client = _first_match(
        state.filters,
        client_if,
        EGRESS,
        lambda f: f.kind == PASS and ipaddress.ip_address(SERVICE_IP) in ipaddress.ip_network(f.cidr),
    )
    return at_server + at_client


def test_first_plan_installs_pass_filters_before_mirrors():
    actions = plan([target(1), target(2)], ActualState(), KZ0).actions
    ops = [(a.op, a.filter.kind if a.filter else None) for a in actions]
    assert ops[:2] == [("add-clsact", None), ("add-clsact", None)]
    first_mirror = next(i for i, op in enumerate(ops) if op[1] == MIRROR)
    assert all(op[1] != PASS for op in ops[first_mirror:])
    state = apply(ActualState(), actions)
    assert len(state.filters) == 2 * 2 + 2 * 2  # two passes (10.0.0.1/32, 10.0.0.2/32) + two mirrors each
    assert plan([target(1), target(2)], state, KZ0).actions == ()  # idempotent


def test_pass_cidrs_collapse_and_keep_families_apart():
    ts = [target(1, "10.0.0.4", "fd00::1"), target(2, "10.0.0.5"), target(3, "10.0.0.7")]
    assert pass_cidrs(ts) == ["10.0.0.4/31", "10.0.0.7/32", "fd00::1/128"]


def test_existing_pass_filters_keep_their_priority_when_pods_come():
    state = apply(ActualState(), plan([target(1), target(3)], ActualState(), KZ0).actions)
    prio_of_1 = {f.ifindex: f.prio for f in state.filters if f.cidr == "10.0.0.1/32"}
    state = apply(state, plan([target(1), target(3), target(5)], state, KZ0).actions)
    assert {
        f.ifindex: f.prio for f in state.filters if f.cidr == "10.0.0.1/32" and f.ifindex in (1, 3)
    } == prio_of_1
    assert all(PRIO_FIRST <= f.prio <= PRIO_MIRROR for f in state.filters)


def test_recreated_capture_interface_repoints_mirrors():
    state = apply(ActualState(), plan([target(1)], ActualState(), KZ0).actions)
    again = plan([target(1)], state, 123)
    assert {a.op for a in again.actions} == {"add-filter", "del-filter"}
    state = apply(state, again.actions)
    assert {f.target for f in state.filters if f.kind == MIRROR} == {123}


def test_teardown_removes_only_our_qdiscs_and_spares_shared_ones():
    state = apply(ActualState(), plan([target(1), target(2)], ActualState(), KZ0).actions)
    state = ActualState(clsact=state.clsact | {7}, owned_clsact=state.owned_clsact, filters=state.filters,
                        foreign_filters={2: 1})  # fmt: skip
    actions = teardown(state).actions
    assert [a.ifindex for a in actions if a.op == "del-clsact"] == [
        1
    ]  # 2 has someone else's filter, 7 not ours
    assert apply(state, actions).filters == ()


def test_removed_filter_is_put_back():
    state = apply(ActualState(), plan([target(1)], ActualState(), KZ0).actions)
    drifted = ActualState(clsact=state.clsact, owned_clsact=state.owned_clsact,
                          filters=tuple(f for f in state.filters if f.direction != INGRESS))  # fmt: skip
    actions = plan([target(1)], drifted, KZ0).actions
    assert [(a.op, a.filter.direction) for a in actions] == [("add-filter", INGRESS)]


def test_unexpected_filter_of_ours_is_removed():
    stray = TcFilter(ifindex=1, direction=INGRESS, prio=PRIO_FIRST, kind=PASS, cidr="10.9.9.9/32")
    state = apply(ActualState(), plan([target(1)], ActualState(), KZ0).actions)
    state = ActualState(clsact=state.clsact, owned_clsact=state.owned_clsact, filters=(*state.filters, stray))
    assert [a.filter for a in plan([target(1)], state, KZ0).actions] == [stray]


def test_conntrack_filters_and_keys_come_before_mirrors_and_go_after_them():
    actions = plan([target(1), target(2)], ActualState(), KZ0, ct_prog=7).actions
    kinds = [a.op if a.ip else (a.op, a.filter.kind if a.filter else None) for a in actions]
    first_mirror = kinds.index(("add-filter", MIRROR))
    assert kinds.index("add-ct-key") < first_mirror and kinds.index(("add-filter", CT)) < first_mirror
    state = apply(ActualState(), actions)
    assert state.ct_keys == {"10.0.0.1", "10.0.0.2"}
    ct = sorted((f.ifindex, f.direction, f.prio, f.target) for f in state.filters if f.kind == CT)
    assert ct == [(1, INGRESS, PRIO_FIRST, 7), (2, INGRESS, PRIO_FIRST, 7)]
    assert plan([target(1), target(2)], state, KZ0, ct_prog=7).actions == ()

    gone = plan([target(1)], state, KZ0, ct_prog=7).actions
    kinds = [a.op if a.ip else (a.op, a.filter.kind if a.filter else None) for a in gone]
    # device 2's clsact is ours: it goes whole (mirror, pass and conntrack filters in one request)
    assert ("del-clsact", None) in kinds and ("del-filter", MIRROR) not in kinds
    last_mirror_del = max(
        i for i, k in enumerate(kinds) if k in (("del-filter", MIRROR), ("del-clsact", None))
    )
    ct_dels = [i for i, k in enumerate(kinds) if k == ("del-filter", CT)]
    assert all(i > last_mirror_del for i in ct_dels) and kinds.index("del-ct-key") > last_mirror_del
    after = apply(state, gone)
    assert after.ct_keys == {"10.0.0.1"} and {f.ifindex for f in after.filters} == {1}


def test_dual_stack_keys_of_both_families_are_added_and_removed_together():
    """A dual-stack pod brings IPv4 and IPv6 keys in one plan (ip_address objects of two versions do not
    compare); IPv4 first, each family in address order."""
    dual = [target(1, "10.0.0.9", "fd00::2"), target(2, "fd00::1", "10.0.0.3")]
    actions = plan(dual, ActualState(), KZ0, ct_prog=7).actions
    assert [a.ip for a in actions if a.op == "add-ct-key"] == ["10.0.0.3", "10.0.0.9", "fd00::1", "fd00::2"]
    state = apply(ActualState(), actions)
    gone = plan([], state, KZ0, ct_prog=7).actions
    assert [a.ip for a in gone if a.op == "del-ct-key"] == ["10.0.0.3", "10.0.0.9", "fd00::1", "fd00::2"]


def test_a_new_program_replaces_the_old_one_without_a_gap():
    """A restarted sensor loads its own program: the new filter goes in before the old one comes out."""
    state = apply(ActualState(), plan([target(1)], ActualState(), KZ0, ct_prog=7).actions)
    actions = plan([target(1)], replace(state, ct_keys=frozenset()), KZ0, ct_prog=8).actions
    ops = [(a.op, a.filter.target if a.filter else a.ip) for a in actions]
    assert ops == [("add-ct-key", "10.0.0.1"), ("add-filter", 8), ("del-filter", 7)]
    new = next(a.filter for a in actions if a.op == "add-filter")
    assert new.prio != PRIO_FIRST and new.prio < PRIO_MIRROR


def test_without_the_program_no_conntrack_filter_and_old_ones_go():
    state = apply(ActualState(), plan([target(1)], ActualState(), KZ0, ct_prog=7).actions)
    actions = plan([target(1)], replace(state, ct_keys=frozenset()), KZ0).actions
    assert [(a.op, a.filter.kind) for a in actions] == [("del-filter", CT)]


def test_teardown_leaves_the_map_to_the_kernel():
    state = apply(ActualState(), plan([target(1)], ActualState(), KZ0, ct_prog=7).actions)
    actions = teardown(state).actions
    assert not [a for a in actions if a.ip] and apply(state, actions).filters == ()


def test_dry_run_describes_a_program_still_to_be_loaded():
    the_plan = plan([target(1)], ActualState(), KZ0, ct_prog=0)
    lines = the_plan.describe({1: "veth1", KZ0: "kz0"})
    assert "add-ct-key 10.0.0.1" in lines
    assert "add-filter veth1 ingress prio 61440 ct-skip (program to be loaded)" in lines


ips = st.integers(min_value=2, max_value=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sets(ips, max_size=8), st.sampled_from([None, 7, 8])), min_size=1, max_size=5))
def test_every_packet_copied_exactly_once_through_any_sequence_of_selections(steps):
    """After each step, and at every point inside each step's action sequence, no packet between pods is
    copied twice, directly or through a service; at the end of each step every packet touching a selected
    pod is copied exactly once (through a service too, when the conntrack filter runs). Steps switch the
    program (a restart loads a new one) or lose it (a kernel that refuses it)."""
    state, previous = ActualState(), None
    for selected, prog in steps:
        # Through a service, no duplicate may appear when the node started exactly-once for it (empty, or
        # left by the same program); the model cannot see the map of an old program.
        check_nat = prog is not None and (not state.filters or previous == prog)
        targets = [target(i) for i in sorted(selected)]
        if prog is None or not any(f.kind == CT and f.target == prog for f in state.filters):
            state = replace(state, ct_keys=frozenset())  # a new program comes with a new, empty map
        the_plan = plan(targets, state, KZ0, ct_prog=prog)
        for cut in range(len(the_plan.actions) + 1):
            partial = apply(state, the_plan.actions[:cut])
            for src in (2, 3, 41):
                for dst in (3, 4, 42):
                    n = mirrored_copies(partial.filters, f"10.0.0.{src}", src, dst)
                    assert n <= 1, (selected, cut, src, dst)
                    if check_nat:
                        n = nat_reply_copies(partial, server_if=src, client_ip=f"10.0.0.{dst}", client_if=dst)
                        assert n <= 1, ("nat", selected, cut, src, dst)
        state = apply(state, the_plan.actions)
        for src in range(2, 9):
            for dst in range(2, 9):
                if src == dst:
                    continue
                expect = 1 if (src in selected or dst in selected) else 0
                n = mirrored_copies(state.filters, f"10.0.0.{src}", src, dst)
                assert n == expect, (selected, src, dst, n)
                if prog is not None:
                    n = nat_reply_copies(state, server_if=src, client_ip=f"10.0.0.{dst}", client_if=dst)
                    assert n == expect, ("nat", selected, src, dst, n)
        assert plan(targets, state, KZ0, ct_prog=prog).actions == ()
        previous = prog


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sets(st.integers(min_value=2, max_value=5)), min_size=2, max_size=6))
def test_replies_through_a_service_never_copied_twice_while_pods_come_and_go(steps):
    """Few pods, every pair: at every point of every plan a DNATed reply is copied at most once, and
    exactly once at the end of each step when either end is selected."""
    state = ActualState()
    for selected in steps:
        the_plan = plan([target(i) for i in sorted(selected)], state, KZ0, ct_prog=7)
        for cut in range(len(the_plan.actions) + 1):
            partial = apply(state, the_plan.actions[:cut])
            for server in range(2, 6):
                for client in range(2, 6):
                    if server != client:
                        n = nat_reply_copies(partial, server, f"10.0.0.{client}", client)
                        assert n <= 1, (selected, the_plan.actions[:cut], server, client)
        state = apply(state, the_plan.actions)
        for server in range(2, 6):
            for client in range(2, 6):
                if server != client:
                    expect = int(server in selected or client in selected)
                    assert nat_reply_copies(state, server, f"10.0.0.{client}", client) == expect

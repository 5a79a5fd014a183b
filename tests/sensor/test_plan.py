"""Desired vs actual mirror state: the plan reaches the desired filters, is idempotent, never duplicates."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.core.plan import (
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
    """A working model of the kernel side, for checking plans (same effects as NetlinkHost.apply)."""
    clsact, owned, filters = set(actual.clsact), set(actual.owned_clsact), list(actual.filters)
    for a in actions:
        if a.op == "add-clsact":
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
                       foreign_filters=actual.foreign_filters)  # fmt: skip


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


ips = st.integers(min_value=2, max_value=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sets(ips, max_size=8), min_size=1, max_size=5))
def test_every_packet_copied_exactly_once_through_any_sequence_of_selections(steps):
    """After each step, and at every point inside each step's action sequence, no packet between pods is
    copied twice; at the end of each step every packet touching a selected pod is copied exactly once."""
    state = ActualState()
    for selected in steps:
        targets = [target(i) for i in sorted(selected)]
        the_plan = plan(targets, state, KZ0)
        for cut in range(len(the_plan.actions) + 1):
            partial = apply(state, the_plan.actions[:cut])
            for src in (2, 3, 41):
                for dst in (3, 4, 42):
                    n = mirrored_copies(partial.filters, f"10.0.0.{src}", src, dst)
                    assert n <= 1, (selected, cut, src, dst)
        state = apply(state, the_plan.actions)
        for src in range(2, 9):
            for dst in range(2, 9):
                if src == dst:
                    continue
                expect = 1 if (src in selected or dst in selected) else 0
                n = mirrored_copies(state.filters, f"10.0.0.{src}", src, dst)
                assert n == expect, (selected, src, dst, n)
        assert plan(targets, state, KZ0).actions == ()

"""Property checks: the index agrees with a brute-force oracle, and cached answers equal fresh lookups."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from enrich.core.enrichment import Enricher
from enrich.core.inventory import Inventory, InventorySettings
from enrich.core.model import InventoryEvent, PodInfo, ServiceInfo

IPS = ["10.244.0.1", "10.244.0.2", "10.244.0.3"]
GRACE = 5.0

pod_specs = st.lists(
    st.tuples(
        st.sampled_from(IPS),
        st.integers(0, 100),  # start
        st.one_of(st.none(), st.integers(0, 60)),  # lifetime (None: still running)
        st.sampled_from(["a", "b"]),  # label value
        st.one_of(st.none(), st.integers(1, 60)),  # label change after this many seconds
    ),
    max_size=8,
)


def build(specs) -> tuple[Inventory, list[tuple[str, float, float, str]]]:
    inv = Inventory(InventorySettings(grace=GRACE, retention=1e9))
    svc = ServiceInfo(uid="svc", name="svc-a", namespace="ns", selector={"v": "a"}, created=50.0)
    inv.apply(InventoryEvent(kind="Service", type="ADDED", obj=svc, ts=50.0))
    truth = []
    for n, (ip, start, life, label, change) in enumerate(specs):
        pod = PodInfo(
            uid=f"u{n}", name=f"p{n}", namespace="ns", ips=(ip,), labels={"v": label}, started=start
        )
        inv.apply(InventoryEvent(kind="Pod", type="ADDED", obj=pod, ts=float(start)))
        if change is not None:
            flipped = "b" if label == "a" else "a"
            changed = PodInfo(
                uid=f"u{n}", name=f"p{n}", namespace="ns", ips=(ip,), labels={"v": flipped}, started=start
            )
            inv.apply(InventoryEvent(kind="Pod", type="MODIFIED", obj=changed, ts=float(start + change)))
        end = float("inf") if life is None else float(start + life)
        if life is not None:
            inv.apply(InventoryEvent(kind="Pod", type="DELETED", obj=pod, ts=end))
        truth.append((ip, float(start), end, f"p{n}"))
    return inv, truth


@settings(max_examples=100, deadline=None)
@given(specs=pod_specs, ts=st.integers(-5, 200).map(lambda t: t + 0.5))
def test_lookup_agrees_with_brute_force(specs, ts: float) -> None:
    inv, truth = build(specs)
    for ip in IPS:
        alive = sorted(name for i, start, end, name in truth if i == ip and start <= ts < end)
        recent = [
            (end, name)
            for i, start, end, name in truth
            if i == ip and start <= ts and end <= ts < end + GRACE
        ]
        m = inv.lookup(ip, ts)
        if len(alive) == 1:
            assert (m.quality, m.name) == ("exact", alive[0])
        elif alive:
            assert m.quality == "ambiguous"
            assert m.candidates == tuple(f"pod:ns/{n}" for n in alive)
        elif recent:
            latest = max(end for end, _ in recent)
            assert m.quality == "after-deletion" and m.name in {n for end, n in recent if end == latest}
        else:
            assert (m.kind, m.quality) == ("unknown", "none")
        assert m.valid_from <= ts < m.valid_to


@settings(max_examples=100, deadline=None)
@given(specs=pod_specs, times=st.lists(st.integers(-5, 200).map(lambda t: t + 0.25), min_size=1, max_size=12))
def test_cached_answers_equal_fresh_lookups(specs, times: list[float]) -> None:
    """Whatever order records come in, the enricher's windowed cache answers as a cold lookup would."""
    inv, _ = build(specs)
    warm = Enricher(inv)
    for ts in times:
        for ip in IPS:
            record = {"ts": ts, "id.orig_h": ip}
            cold = Enricher(inv).fields_for(record, ("id.orig_h",))
            assert warm.fields_for(record, ("id.orig_h",)) == cold

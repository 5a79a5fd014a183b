"""What Zeek 7's own logs declare about their fields, for JSON logs (which carry no `#types`).

TSV logs tell their field types in the `#types` header; JSON lines do not. Enrichment
needs to know which fields hold an address, and ISO 8601 timestamps need to know which
fields hold a time. The table below is Zeek 7.0's log records (the scalar `addr` fields
and the `time` fields), checked against the TSV headers of real Zeek 7.0.11 output in
../shared/zeek-samples and pcaps/*.zeek. A log not listed (a custom or plugin log)
falls back to the connection tuple `id.orig_h` / `id.resp_h`, present in most logs.
"""

from __future__ import annotations

CONN_TUPLE: tuple[str, ...] = ("id.orig_h", "id.resp_h")

# Scalar `addr` fields per log path. Vector/set of addr fields (smtp `path`, x509 `san.ip`)
# are not endpoints of the record and are left as they are.
ADDR_FIELDS: dict[str, tuple[str, ...]] = {
    "conn": CONN_TUPLE,
    "dns": CONN_TUPLE,
    "http": CONN_TUPLE,
    "ssl": CONN_TUPLE,
    "files": CONN_TUPLE,
    "weird": CONN_TUPLE,
    "ssh": CONN_TUPLE,
    "smtp": (*CONN_TUPLE, "x_originating_ip"),
    "ftp": (*CONN_TUPLE, "data_channel.orig_h", "data_channel.resp_h"),
    "notice": (*CONN_TUPLE, "src", "dst"),
    "notice_alarm": (*CONN_TUPLE, "src", "dst"),
    "dhcp": ("client_addr", "server_addr", "requested_addr", "assigned_addr"),
    "intel": ("seen.host", *CONN_TUPLE),
    "known_hosts": ("host",),
    "known_services": ("host",),
    "known_certs": ("host",),
    "software": ("host",),
    "radius": (*CONN_TUPLE, "framed_addr"),
    "x509": (),
    "reporter": (),
    "capture_loss": (),
    "stats": (),
    "loaded_scripts": (),
    "packet_filter": (),
}

# `time` fields per log path besides `ts` (which every log has).
TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "x509": ("certificate.not_valid_before", "certificate.not_valid_after"),
    "ocsp": ("thisUpdate", "nextUpdate", "revoketime"),
    "ntp": ("ref_time", "org_time", "rec_time", "xmt_time"),
    "pe": ("compile_ts",),
}


def addr_fields_for(path: str | None) -> tuple[str, ...]:
    """The scalar address fields of a Zeek log, by its path (`conn`, `notice`, ...)."""
    if path is None:
        return CONN_TUPLE
    return ADDR_FIELDS.get(path, CONN_TUPLE)


def time_fields_for(path: str | None) -> tuple[str, ...]:
    """The time-typed fields of a Zeek log, `ts` first."""
    return ("ts", *TIME_FIELDS.get(path or "", ()))

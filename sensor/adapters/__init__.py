"""Adapters of the sensor: netlink/tc and the node's pod watch."""

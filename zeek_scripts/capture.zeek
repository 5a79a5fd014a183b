##! Packet capture settings for mirrored pod traffic.

# Packets mirrored off a pod's veth carry checksums the kernel offloads and
# never fills in; Zeek would drop every such packet as invalid.  Ignoring
# checksums makes the package work without ``-C``.
redef ignore_checksums = T;

# Mirrored packets can be GSO-sized (up to 64 KiB): capture them whole.
# Pcap::snaplen applies to libpcap sources (``-i kz0``) ...
redef Pcap::snaplen = 65535;

# ... and an AF_PACKET ring block must hold the largest packet
# (``-i af_packet::kz0``; the plugin is built into Zeek on Linux).
@ifdef ( AF_Packet::block_size )
redef AF_Packet::block_size = 4096 * 32;
@endif

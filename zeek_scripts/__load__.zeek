##! kubezeek's Zeek package: what the zeek container of the DaemonSet loads.
##!
##! Written for Zeek 7.0 LTS and newer, and meant for bare mode (``zeek -b``):
##! only the analyzers analysts need run, everything else stays unloaded.
##! The node-specific settings (``Site::local_nets`` and
##! ``KubeZeek::node_name``) come from a redef file loaded after this
##! package, e.g. the sensor's ``/var/run/kubezeek/local.zeek``:
##!
##!     zeek -b -i af_packet::kz0 /opt/kubezeek/zeek_scripts /var/run/kubezeek/local.zeek
##!
##! See docs/zeek.md for the whole contract.

@load ./analyzers
@load ./capture
@load ./logging
@load ./node

"""kubezeek's node agent: selects pods on this node and mirrors their traffic to Zeek's capture interface."""

# The zeek container: the official Zeek 7.0 LTS image with kubezeek's Zeek package.
# Build from the repository root:  docker build -f deploy/images/zeek.Dockerfile -t ghcr.io/kubezeek/kubezeek-zeek:0.1.0-zeek7.0.11 .
FROM zeek/zeek:7.0.11

ENV TZ=UTC \
    LC_ALL=C

COPY zeek_scripts/ /opt/kubezeek/zeek_scripts/
COPY deploy/images/zeek-run.sh /opt/kubezeek/bin/zeek-run

# Fail the build, not the node, when the package does not load in this Zeek.
RUN chmod 0755 /opt/kubezeek/bin/zeek-run \
    && zeek -b --parse-only /opt/kubezeek/zeek_scripts

WORKDIR /var/log/kubezeek/zeek
ENTRYPOINT ["/opt/kubezeek/bin/zeek-run"]

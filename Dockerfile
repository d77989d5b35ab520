# switchyard on Debian 12, installed from the .deb that the first stage builds from this tree
# (debian/, the same package as `dpkg-buildpackage -us -uc -b`):
#     docker build -t switchyard:0.1.0 .
# conf/k8s/ runs it: the routing table from a ConfigMap at /etc/switchyard, the admin socket
# and the journal on emptyDirs. See docs/kubernetes.md.
FROM debian:12 AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential debhelper meson ninja-build pkg-config python3 \
        libevent-dev libnghttp2-dev libyaml-dev libssl-dev libcmocka-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src/switchyard
COPY . .
RUN dpkg-buildpackage -us -uc -b && cp ../switchyard_*.deb /switchyard.deb

FROM debian:12-slim
# The user the package's postinst would make, with fixed ids that the manifests can name
# (runAsUser: 10001): the postinst keeps an existing `switchyard` user.
RUN groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchyard \
        --no-create-home --shell /usr/sbin/nologin switchyard
COPY --from=build /switchyard.deb /tmp/switchyard.deb
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        /tmp/switchyard.deb \
    && rm -rf /var/lib/apt/lists/* /tmp/switchyard.deb
USER 10001:10001
# 8080: traffic (the ConfigMap's listen); 9901: admin.http (/readyz, /healthz, /metrics).
EXPOSE 8080 9901
ENTRYPOINT ["/usr/bin/switchyard"]
CMD ["-c", "/etc/switchyard/switchyard.yaml"]

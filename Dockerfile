# custodian in a container: a multi-stage build, Debian bookworm both sides.
#
#   docker build -t custodian .
#   docker run --rm custodian check /usr/share/doc/custodian/examples/local.cfg
#   docker run -d --name custodian -p 8080:8080 -v /etc/custodian:/etc/custodian:ro \
#       -v custodian-state:/var/lib/custodian \
#       custodian serve --listen 0.0.0.0:8080 --settings /etc/custodian/custodian.toml /etc/custodian/tests/hosting.cfg
#
# ping: custodian first opens an unprivileged ICMP datagram socket, which works when the
# container's net.ipv4.ping_group_range includes its group. Docker (20.10 and later) and
# podman set that range for every container; elsewhere (Kubernetes, older Docker) either set it,
#   docker run --sysctl net.ipv4.ping_group_range='0 2147483647' ...
# or give the raw-socket fallback CAP_NET_RAW, which a non-root user only receives as root:
#   docker run --cap-add NET_RAW --user root ...
# Without either, ping checks are "unknown" (cannot open an ICMP socket), never "down".

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The release profile (Cargo.toml) has no debug info, is stripped and uses thin LTO.
RUN cargo build --release --locked -p custodian \
    && install -D -m 0755 target/release/custodian /out/usr/bin/custodian \
    && mkdir -p /out/usr/share/man/man1 \
    && /out/usr/bin/custodian manpages /out/usr/share/man/man1 >/dev/null \
    && gzip -9n /out/usr/share/man/man1/*.1

FROM debian:bookworm-slim
# ca-certificates: the system trust store that https, ssl and the other TLS checks use by
# default (tls_roots = "system").
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home-dir /var/lib/custodian --create-home \
        --shell /usr/sbin/nologin custodian
COPY --from=build /out/ /
COPY examples/ /usr/share/doc/custodian/examples/
# Alert states and serve's history default to $STATE_DIRECTORY (as under systemd).
ENV STATE_DIRECTORY=/var/lib/custodian
VOLUME ["/var/lib/custodian"]
USER custodian
WORKDIR /var/lib/custodian
EXPOSE 8080
ENTRYPOINT ["custodian"]
CMD ["--help"]

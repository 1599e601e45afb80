# edgeward container image.
#
#   docker build -t edgeward .
#   docker run --rm -p 8080:8080 -p 8443:8443 \
#     -v "$PWD/edgeward.toml:/etc/edgeward/edgeward.toml:ro" edgeward
#
# The config is /etc/edgeward/edgeward.toml (the image ships deploy/docker/edgeward.toml
# there: mount your own over it). Your certificates go in a read-only mount such as
# /etc/edgeward/tls; without any, the self-signed fallback is kept in the
# /var/lib/edgeward/certs volume. See docs/deployment.md.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/edgeward /out/usr/local/bin/edgeward \
    && install -d -m 0755 /out/var/lib/edgeward/certs

# distroless: glibc, CA certificates, a nonroot user (65532), no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/edgeward /usr/local/bin/edgeward
COPY --from=build --chown=65532:65532 /out/var/lib/edgeward /var/lib/edgeward
COPY deploy/docker/edgeward.toml /etc/edgeward/edgeward.toml
USER 65532:65532
VOLUME ["/var/lib/edgeward/certs"]
# 8080 HTTP, 8443 HTTPS, 9901 admin (loopback in the shipped config), 9902 probes.
EXPOSE 8080 8443 9901 9902
# SIGTERM starts the drain: not ready, keep serving for shutdown.propagation_delay, then
# finish in-flight requests. Give the container at least propagation_delay + drain_timeout +
# stream_timeout + 5 s before it is killed (docker stop -t 50, compose stop_grace_period).
STOPSIGNAL SIGTERM
# No shell or curl in the image: the binary probes itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["edgeward", "probe", "--timeout", "2", "http://127.0.0.1:9902/health/ready"]
ENTRYPOINT ["edgeward", "run", "--config", "/etc/edgeward/edgeward.toml"]

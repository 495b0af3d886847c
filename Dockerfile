# egressd container image: a static binary on distroless, run as non-root.
#
#   docker build -t egressd --build-arg VERSION=v0.1.0 .
#   docker run -d --name egressd -v egressd-data:/data \
#     -p 8080:8080 -p 127.0.0.1:8081:8081 -p 127.0.0.1:9090:9090 egressd
#   docker logs egressd    # the first start prints the admin and operator keys once
#
# .ci/run checks this file statically (stages, USER, VOLUME, EXPOSE,
# HEALTHCHECK, CMD flags) and builds the binary the way the build stage does.

# ---- build stage ---------------------------------------------------------
# Runs on the builder's platform and cross-compiles for the target one
# (pure Go, CGO off), so multi-arch builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build

WORKDIR /src

# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum
# change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .

ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/egressd ./cmd/egressd

# The data dir, owned by the runtime user: distroless has no shell to mkdir or
# chown there. A named volume mounted on /data starts as a copy of it, owner
# included (a bind mount keeps the host directory's owner: chown it to 65532).
RUN mkdir -p /out/data

# ---- runtime stage -------------------------------------------------------
# distroless static: CA roots (upstream TLS is always verified), tzdata,
# /etc/passwd with "nonroot" (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/egressd /egressd
COPY --from=build --chown=65532:65532 /out/data /data

USER 65532:65532

# master.key (unless EGRESSD_MASTER_KEY is set), ca.pem, ca-key.pem, egressd.db
VOLUME /data

# 8080 proxy (the sandboxes' HTTPS_PROXY), 8081 admin API with /healthz and
# /readyz, 9090 /metrics. The admin and metrics listeners speak plain HTTP:
# publish them only on loopback or a private network.
EXPOSE 8080 8081 9090

# No curl or wget in distroless: the binary checks itself. "egressd
# healthcheck" exits 0 when /healthz answers 200 within --timeout. The URL
# matches --admin-listen in CMD: keep 8081 inside the container (remap with
# -p), or override the health check too if you change it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/egressd", "healthcheck", "--url", "http://127.0.0.1:8081/healthz", "--timeout", "3s"]

# The audit mode is serve's default, journal: an audit row is written to the
# audit journal (on /data) before a value leaves, so a crash or kill of the
# container loses none; a power loss may lose the last ~75 ms of rows. For
# power-loss durability: docker run -e EGRESSD_AUDIT=sync ... (one fdatasync
# per group of requests; docs/operating.md#audit-modes).
ENTRYPOINT ["/egressd"]
CMD ["serve", "--data-dir", "/data", "--admin-listen", "0.0.0.0:8081", "--metrics-listen", "0.0.0.0:9090", "--proxy-listen", "0.0.0.0:8080"]

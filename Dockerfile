# syntax=docker/dockerfile:1
#
# kseal container image: a static Go binary on a distroless base that has no
# shell, no package manager and runs as a non-root user.
#
#   docker build -t kseal --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm -v $PWD/kseal.yaml:/etc/kseal/kseal.yaml:ro -p 9092:9092 kseal
#
# Checked without Docker by deploy/validate (go test): see deploy/README.md.

# GO_VERSION must be at least the go line of go.mod: the official golang
# images set GOTOOLCHAIN=local, so an older image cannot fetch a newer toolchain.
ARG GO_VERSION=1.26.8

# The builder runs on the build host's platform and cross-compiles for the
# target's (docker buildx build --platform linux/amd64,linux/arm64 .): with
# CGO off that needs no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so editing the source does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# Only what the binary is built from: tests, docs and tools stay out
# (.dockerignore drops the rest of the context).
COPY cmd/ cmd/
COPY internal/ internal/
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
# CGO_ENABLED=0: a static binary (pure-Go net and os/user), needed on a base
# image without a C library. -trimpath keeps build paths out of the binary.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/kseal ./cmd/kseal

# distroless/static: CA certificates (for TLS to brokers and KMS endpoints),
# tzdata and /etc/passwd with the nonroot user (65532), and nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kseal /usr/local/bin/kseal
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading
# /etc/passwd.
USER 65532:65532
# Bootstrap, broker ports (node ids 0-5 as in deploy/kubernetes; kseal binds
# brokerPortStart+N for every node id it sees), admin (/healthz, /readyz,
# /metrics). EXPOSE documents; the config decides what kseal listens on.
EXPOSE 9092 9100-9105 9190
# No HEALTHCHECK: it would need a shell or an HTTP client in the image, and
# distroless has neither. Kubernetes probes /healthz and /readyz on the admin
# port instead (deploy/kubernetes/deployment.yaml).
ENTRYPOINT ["/usr/local/bin/kseal"]
CMD ["run", "--config", "/etc/kseal/kseal.yaml"]

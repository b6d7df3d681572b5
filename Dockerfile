# syntax=docker/dockerfile:1
# The ComfyFleet gateway: one static binary (the embedded store is pure Go)
# on a distroless base, run as a non-root user, data in a volume.
#
#   docker build -t comfyfleet:local --build-arg VERSION=$(git describe --tags --always --dirty) .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
# CGO_ENABLED=0: a static binary that needs no libc in the image.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/comfyfleet/comfyfleet/internal/buildinfo.version=${VERSION}" \
      -o /out/comfyfleet ./cmd/comfyfleet \
 && mkdir -p /out/data/files

# distroless/static: CA certificates (rediss://), tzdata, /etc/passwd with
# the user nonroot (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/comfyfleet /usr/local/bin/comfyfleet
# The data dir (database, generated secrets, replica id) and the file store
# under it, owned by the gateway's user so a fresh volume gets that owner.
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /var/lib/comfyfleet
USER 65532:65532
ENV COMFYFLEET_DATA_DIR=/var/lib/comfyfleet \
    COMFYFLEET_SERVER_LISTEN=:3000
VOLUME ["/var/lib/comfyfleet"]
EXPOSE 3000
# No shell tools in the image: the binary probes itself (GET /livez).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/comfyfleet", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/comfyfleet"]
CMD ["serve"]

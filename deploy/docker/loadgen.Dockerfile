# loadgen: the load generator, the runner and the operator (`loadgen run | runner | operator`).
# Build from the repository root: docker build -f deploy/docker/loadgen.Dockerfile -t ricochet/loadgen:0.1.0 .
# Runs as a non-root user; the Deployments and runner Jobs also set readOnlyRootFilesystem
# (the binary writes nothing outside the /tmp emptyDir the runner pods mount).
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p loadgen --bin loadgen \
 && cp target/release/loadgen /loadgen

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /loadgen /usr/local/bin/loadgen
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/loadgen"]

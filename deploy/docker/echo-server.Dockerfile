# echo-server: the instrumented reference workload.
# Build from the repository root: docker build -f deploy/docker/echo-server.Dockerfile -t ricochet/echo-server:0.1.0 .
# Non-root; the Deployment sets readOnlyRootFilesystem (the server writes nothing to disk).
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p echo-server --bin echo-server \
 && cp target/release/echo-server /echo-server

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /echo-server /usr/local/bin/echo-server
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/echo-server"]

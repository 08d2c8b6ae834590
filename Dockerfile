# A small static image: the operator built for musl, on distroless/static, as non-root.
# (Not built in this project's CI, which has no container engine: scripts/image builds the
# same binary into an archive the one-node cluster of the end-to-end tests imports.)
FROM rust:1-alpine AS build
# make: jemalloc is built from source.
RUN apk add --no-cache musl-dev make
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
# The workspace's other crates must be present for Cargo to load it; only the operator
# package (and the Connect client it depends on) is compiled.
COPY crates crates
RUN cargo build --release --locked -p onepassword-operator --bin onepassword-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/onepassword-operator /onepassword-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/onepassword-operator"]
CMD ["run"]

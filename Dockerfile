# syntax=docker/dockerfile:1
# The operator image: a release build from the lock file, run as a non-root user
# on a distroless base (no shell, no package manager at run time).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Manifests first, so the dependency layer is cached across source changes.
COPY Cargo.toml Cargo.lock ./
COPY emulator/Cargo.toml emulator/Cargo.toml
RUN mkdir -p src emulator/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > emulator/src/main.rs && touch emulator/src/lib.rs \
    && cargo build --release --locked -p guardduty-operator \
    && rm -rf src emulator/src
COPY src src
COPY emulator/src emulator/src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked -p guardduty-operator --bin guardduty-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/guardduty-operator /usr/local/bin/guardduty-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/guardduty-operator"]

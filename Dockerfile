# Multi-stage build of the execution-coordinator daemon; the runtime image runs as a non-root user.
#   docker build -t execution-coordinator .
#   docker run --rm -e EXECUTION_COORDINATOR__KAFKA__BOOTSTRAP_SERVERS=kafka:9092 -p 9464:9464 execution-coordinator
FROM rust:1-bookworm AS build
# librdkafka is built from source by rdkafka-sys (C toolchain, make, zlib and OpenSSL headers).
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake zlib1g-dev \
    libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY actors ./actors
COPY benches ./benches
COPY schemas ./schemas
COPY tests ./tests
RUN cargo build --release --locked -p execution-coordinator

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin coordinator
COPY --from=build /src/target/release/execution-coordinator /usr/local/bin/execution-coordinator
COPY config.toml /etc/execution-coordinator/config.toml
USER 10001:10001
# Metrics and health (/metrics, /healthz, /readyz); bind to all interfaces inside the container.
ENV EXECUTION_COORDINATOR__DAEMON__METRICS_ADDR=0.0.0.0:9464
EXPOSE 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/execution-coordinator"]
CMD ["run", "--config", "/etc/execution-coordinator/config.toml"]

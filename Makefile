# The project's front door: the README's commands and CI's (.ci/run) are these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CONFIG ?= config.toml

.PHONY: help run test bench lint kafka-up kafka-down kafka-status kafka-logs

help:
	@echo "make run         build and run the daemon (--config $(CONFIG))"
	@echo "make test        start Apache Kafka, run every test of the workspace against it, stop it"
	@echo "make bench       start Apache Kafka, run the core and end-to-end benchmarks, print one table"
	@echo "make lint        rustfmt check and clippy -D warnings"
	@echo "make kafka-up    start the test broker (scripts/kafka.sh up); kafka-down stops it"

run:
	cargo run --release -p execution-coordinator -- demo --config $(CONFIG)

# Starts Apache Kafka unless KAFKA_BOOTSTRAP_SERVERS is set, runs every test of the workspace
# against it, stops it even when the tests fail, and exits with the tests' status.
test:
	scripts/with-kafka.sh cargo test --workspace

# Core criterion benchmarks and end-to-end runs through a real broker (SPEC §8), then one table
# of both; BENCH_QUICK=1 for a short run. See scripts/bench-e2e.sh.
bench:
	scripts/with-kafka.sh scripts/bench-e2e.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

kafka-up:
	@scripts/kafka.sh up
	@echo "export KAFKA_BOOTSTRAP_SERVERS=$$(scripts/kafka.sh bootstrap)"

kafka-down:
	@scripts/kafka.sh down

kafka-status:
	@scripts/kafka.sh status

kafka-logs:
	@scripts/kafka.sh logs

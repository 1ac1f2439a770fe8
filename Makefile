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
	@echo "make kafka-up    start the test brokers (scripts/kafka.sh up, plain and secure); kafka-down stops them"

run:
	cargo run --release -p execution-coordinator -- demo --config $(CONFIG)

# Starts the plain and the SASL_SSL Apache Kafka brokers (unless KAFKA_BOOTSTRAP_SERVERS,
# resp. KAFKA_SECURE_BOOTSTRAP_SERVERS, are set), runs every test of the workspace against them,
# stops them even when the tests fail, and exits with the tests' status.
test:
	scripts/with-kafka.sh cargo test --workspace

# Core criterion benchmarks and end-to-end runs through a real broker, then one table
# of both; BENCH_QUICK=1 for a short run. See scripts/bench-e2e.sh.
bench:
	scripts/with-kafka.sh scripts/bench-e2e.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

kafka-up:
	@scripts/kafka.sh up
	@KAFKA_SECURE=1 scripts/kafka.sh up
	@echo "export KAFKA_BOOTSTRAP_SERVERS=$$(scripts/kafka.sh bootstrap)"
	@KAFKA_SECURE=1 scripts/kafka.sh env | sed "s/^\([^=]*\)=\(.*\)$$/export \1='\2'/"

kafka-down:
	@scripts/kafka.sh down
	@KAFKA_SECURE=1 scripts/kafka.sh down

kafka-status:
	@scripts/kafka.sh status; KAFKA_SECURE=1 scripts/kafka.sh status

kafka-logs:
	@scripts/kafka.sh logs

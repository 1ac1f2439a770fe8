//! The Execution Coordinator daemon library: actors and Kafka adapters.

"""Everything that talks to Kafka: clients, admin, the error boundary."""

"""The streaming runtime: the processor's loop, partition state, ordering lanes, offsets,
the two commit strategies (at-least-once, exactly-once), deliveries and the watchdog."""

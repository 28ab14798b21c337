from tests.support.kafka import kafka_cluster  # noqa: F401  (the session's mock cluster)

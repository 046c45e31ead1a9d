//! `GET /metrics` over HTTP/1.1 for Prometheus.

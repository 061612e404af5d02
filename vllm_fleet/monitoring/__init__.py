"""Monitoring, one module per job: exporters (which exporters each host runs), prometheus (what
Prometheus on the monitoring hosts scrapes), alerts (the alert rules) and alertmanager (where
alerts go). Every file is rendered with yaml.safe_dump (values are quoted for YAML) and checked
by promtool and amtool in the tests; tasks/monitoring.py and tasks/exporters.py install them."""

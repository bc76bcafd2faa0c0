// Package prometheus holds operator files: prometheus.yml, alertmanager.yml
// and, in rules/, the Prometheus rule files generated from alertrca's rule
// definitions with their promtool unit tests. Its tests check all of them with
// promtool and amtool and fail when a generated file is stale.
package prometheus

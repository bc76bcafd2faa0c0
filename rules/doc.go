// Package rules will hold the rule definitions (threshold and z-score), the
// detectors, the Prometheus poller and the rule-file generator. The poller
// hands its anomalies to the same pipeline entry point as the webhook.
package rules

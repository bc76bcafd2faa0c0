// Package prometheus holds operator files (prometheus.yml, alertmanager.yml)
// and the test that checks them with promtool and amtool.
package prometheus

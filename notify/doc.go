// Package notify will hold the notifiers (email, Slack) and their retry
// policy. The pipeline calls them through its AfterRCA hook once an analysis
// is stored.
package notify

"""Notification channels: email, Slack, PagerDuty, webhook, Alertmanager, console."""

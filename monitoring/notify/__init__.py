"""Notifications: the pipeline from alert transitions to delivered messages.

Stages (each a small module, each tested on a fake clock): routing (the rule's
channels plus a label-matching routing tree), grouping, inhibition, silences,
mute time intervals, deduplication, cooldown and repeat, escalation with
acknowledgement and on-call schedules, then a durable outbox from which the
channels deliver with retries. See docs/notifications.md.
"""

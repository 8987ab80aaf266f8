"""Push instead of poll: subscriptions, the outbox written with each event, the dispatcher."""

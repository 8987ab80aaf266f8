"""EPU domain: identifiers, rules and use cases. Never imports Flask."""

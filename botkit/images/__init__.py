"""Images users send: checked and re-encoded, stored with their message, shown to a model that
can see (or described by one that can, for one that cannot)."""

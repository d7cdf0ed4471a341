"""Who is asking and what they may do: credentials (passwords, API keys, sign-in
backoff), audited changes to accounts, the per-request permission checks, browser-only
cookie sessions, and the sign-in pages."""

"""The client: Locust users that send chat completions to the proxies (see README.md)."""

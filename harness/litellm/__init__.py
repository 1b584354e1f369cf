"""What the harness knows about LiteLLM: supported versions, per-version environments, the proxy config."""

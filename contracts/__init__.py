"""Wire contracts: CloudEvents envelopes, event payloads and HTTP request/response models."""

"""The contract both sides share: wire models and event identity, topics, request signing,
the code token format, the registry's models, the configuration base, the classification of
the central's HTTP answers and durable file writes. Imports neither `edge` nor `cloud_bridge`.
"""

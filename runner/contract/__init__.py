"""The contract shared by the gateway and the runner.

Everything here is imported by both sides, so it depends on neither: capability names,
the sealed secret envelope, the content-addressed bundle store and the execute protocol.
"""

"""Bulk bodies: request/response bodies cross the host/guest boundary as one buffer.

`transform` (publish time, in the compile subprocess) appends a `handler-b64` export to a
component; `codec` is the host side of its text encoding; `abi` derives the layout from the
runner's WIT; `adapter` is the in-guest core module. See docs/runner.md ("Bulk bodies").
"""

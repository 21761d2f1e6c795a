"""Controls: settings of the site written from MQTT / Home Assistant, each write confirmed by reading it back.

Layers, each testable on its own: `catalog` (what each control is, which hardware and token it needs,
command validation), `documents` (pure read-modify-write of the Envoy's whole documents), `commands`
(the per-Envoy single-writer queue: coalescing, minimum gap), `writer` (one write and its read-back),
`watch` (the revert watcher), `state` (the retained state payload), `service` (MQTT wiring and lifecycle).
"""

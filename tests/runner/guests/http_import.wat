;; Imports wasi:http/outgoing-handler: must be rejected at publish time.
(component
  (import "wasi:http/outgoing-handler@0.2.0" (instance (export "ping" (func))))
  (core module $m (func (export "f")))
  (core instance $i (instantiate $m))
  (func $h (canon lift (core func $i "f")))
  (export "handler" (func $h))
)

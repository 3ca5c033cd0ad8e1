;; Exports no `handler`: must be rejected at publish time.
(component
  (core module $m (func (export "f")))
  (core instance $i (instantiate $m))
  (func $g (canon lift (core func $i "f")))
  (export "something-else" (func $g))
)

;; Like echo.wat, but its bodies are option<string>, not the runner world's option<list<u8>>:
;; it links and runs, and the bulk transform must refuse it (plain path, no error).
;; Original: echoes the request body with status 200. Hand-written canonical ABI:
;; execute-request is passed by pointer (22 flat params > 16); body option at offset 76,
;; ptr 80, len 84. execute-response (24 bytes) is returned by pointer at 64.
(component
  (type $ctx' (record
    (field "request-id" (option string))
    (field "tenant-id" string)
    (field "extension-id" string)
    (field "install-id" (option string))
    (field "version-id" (option string))))
  (export $ctx "context-data" (type $ctx'))
  (type $hdr' (record (field "name" string) (field "value" string)))
  (export $hdr "http-header" (type $hdr'))
  (type $hreq' (record
    (field "method" string)
    (field "url" string)
    (field "headers" (list $hdr))
    (field "body" (option string))))
  (export $hreq "http-request" (type $hreq'))
  (type $req' (record (field "context" $ctx) (field "http" $hreq)))
  (export $req "execute-request" (type $req'))
  (type $resp' (record
    (field "status" u16)
    (field "headers" (list $hdr))
    (field "body" (option string))))
  (export $resp "execute-response" (type $resp'))
  (core module $m
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param $old i32) (param $osz i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32) (local $end i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1))) (i32.const -1)) (then unreachable))))
      (global.set $bump (local.get $end))
      (local.get $p))
    (func (export "handler") (param $p i32) (result i32)
      (i32.store16 (i32.const 64) (i32.const 200))
      (i32.store (i32.const 68) (i32.const 0))
      (i32.store (i32.const 72) (i32.const 0))
      (i32.store8 (i32.const 76) (i32.load8_u (i32.add (local.get $p) (i32.const 76))))
      (i32.store (i32.const 80) (i32.load (i32.add (local.get $p) (i32.const 80))))
      (i32.store (i32.const 84) (i32.load (i32.add (local.get $p) (i32.const 84))))
      (i32.const 64)))
  (core instance $i (instantiate $m))
  (func $h (param "request" $req) (result $resp)
    (canon lift (core func $i "handler") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (export "handler" (func $h))
)

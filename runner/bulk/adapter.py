"""The core module placed between the bulk lift (`handler-b64`) and the guest's core `handler`.

Generated from a WAT template whose offsets come from `abi` (never constants) and compiled
with `wasmtime.wat2wasm`, which is deterministic: the same layout gives the same bytes.

Request: the host sends the body as radix-64 text; before the guest runs, the adapter decodes
it into a fresh block of exactly the body's size from the guest's own `cabi_realloc`, so the
guest's core `handler` finds what a `list<u8>` lowering would have written. (The prototype
decoded in place and shrank the block with realloc; a guest whose realloc does not copy -
wasmtime never asks it to - then saw zeros, so this costs one more block instead.)
Response: after the guest returns, the body bytes are encoded into a new block and a copy of
the response record points at it; `post` calls the guest's post-return with the ORIGINAL
record pointer, so the guest frees exactly what it allocated. The canonical ABI has no free:
the adapter's blocks (the request text, ~1.33× the request body; the response text, ~1.33×
the response body; a copy of the response record) live until the store is dropped, and they
count against the store's memory limit like any guest allocation.
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmtime import wat2wasm


@dataclass(frozen=True)
class BodyLayout:
    """Where the option<list<u8>> body sits inside a record in guest memory."""

    discriminant: int  # u8: 0 = none, 1 = some
    pointer: int  # u32
    length: int  # u32


@dataclass(frozen=True)
class AdapterLayout:
    request_body: BodyLayout  # relative to the execute-request pointer the lift passes
    response_body: BodyLayout  # relative to the execute-response pointer the guest returns
    response_size: int
    response_align: int
    has_post_return: bool


# The radix-64 codec shared by the export adapter and the import adapter (runner/bulk/imports.py).
CODEC_WAT = r"""
  ;; Decode `chars` radix-64 chars at `p` into `q` (`bytes_for(chars)` bytes, allocated).
  (func $decode (param $p i32) (param $chars i32) (param $q i32)
    (local $in i32) (local $out i32) (local $end i32) (local $w i32) (local $v i32) (local $tail i32)
    (local.set $end (i32.add (local.get $p) (i32.and (local.get $chars) (i32.const -4))))
    (local.set $in (local.get $p))
    (local.set $out (local.get $q))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $in) (local.get $end)))
      (local.set $w (i32.sub (i32.load align=1 (local.get $in)) (i32.const 0x30303030)))
      (local.set $v (i32.or
        (i32.or (i32.shl (i32.and (local.get $w) (i32.const 0x3f)) (i32.const 18))
                (i32.shl (i32.and (i32.shr_u (local.get $w) (i32.const 8)) (i32.const 0x3f)) (i32.const 12)))
        (i32.or (i32.shl (i32.and (i32.shr_u (local.get $w) (i32.const 16)) (i32.const 0x3f)) (i32.const 6))
                (i32.and (i32.shr_u (local.get $w) (i32.const 24)) (i32.const 0x3f)))))
      (i32.store8 (local.get $out) (i32.shr_u (local.get $v) (i32.const 16)))
      (i32.store8 offset=1 (local.get $out) (i32.shr_u (local.get $v) (i32.const 8)))
      (i32.store8 offset=2 (local.get $out) (local.get $v))
      (local.set $in (i32.add (local.get $in) (i32.const 4)))
      (local.set $out (i32.add (local.get $out) (i32.const 3)))
      (br $next)))
    (local.set $tail (i32.and (local.get $chars) (i32.const 3)))
    (if (i32.ge_u (local.get $tail) (i32.const 2))
      (then
        (local.set $v (i32.or
          (i32.shl (i32.and (i32.sub (i32.load8_u (local.get $in)) (i32.const 0x30)) (i32.const 0x3f))
                   (i32.const 18))
          (i32.shl (i32.and (i32.sub (i32.load8_u offset=1 (local.get $in)) (i32.const 0x30)) (i32.const 0x3f))
                   (i32.const 12))))
        (if (i32.eq (local.get $tail) (i32.const 3))
          (then (local.set $v (i32.or (local.get $v)
            (i32.shl (i32.and (i32.sub (i32.load8_u offset=2 (local.get $in)) (i32.const 0x30)) (i32.const 0x3f))
                     (i32.const 6))))))
        (i32.store8 (local.get $out) (i32.shr_u (local.get $v) (i32.const 16)))
        (if (i32.eq (local.get $tail) (i32.const 3))
          (then (i32.store8 offset=1 (local.get $out) (i32.shr_u (local.get $v) (i32.const 8))))))))

  ;; Encode `n` bytes at `p` into `q` (`chars_for(n)` bytes, already allocated).
  (func $encode (param $p i32) (param $n i32) (param $q i32)
    (local $in i32) (local $end i32) (local $out i32) (local $v i32) (local $tail i32)
    (local.set $end (i32.add (local.get $p) (i32.mul (i32.div_u (local.get $n) (i32.const 3)) (i32.const 3))))
    (local.set $in (local.get $p))
    (local.set $out (local.get $q))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $in) (local.get $end)))
      (local.set $v (i32.or
        (i32.or (i32.shl (i32.load8_u (local.get $in)) (i32.const 16))
                (i32.shl (i32.load8_u offset=1 (local.get $in)) (i32.const 8)))
        (i32.load8_u offset=2 (local.get $in))))
      (i32.store align=1 (local.get $out) (i32.add (i32.const 0x30303030)
        (i32.or (i32.or (i32.shr_u (local.get $v) (i32.const 18))
                        (i32.shl (i32.and (i32.shr_u (local.get $v) (i32.const 12)) (i32.const 0x3f)) (i32.const 8)))
                (i32.or (i32.shl (i32.and (i32.shr_u (local.get $v) (i32.const 6)) (i32.const 0x3f)) (i32.const 16))
                        (i32.shl (i32.and (local.get $v) (i32.const 0x3f)) (i32.const 24))))))
      (local.set $in (i32.add (local.get $in) (i32.const 3)))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (br $next)))
    (local.set $tail (i32.sub (i32.add (local.get $p) (local.get $n)) (local.get $in)))
    (if (local.get $tail)
      (then
        (local.set $v (i32.shl (i32.load8_u (local.get $in)) (i32.const 16)))
        (if (i32.eq (local.get $tail) (i32.const 2))
          (then (local.set $v (i32.or (local.get $v) (i32.shl (i32.load8_u offset=1 (local.get $in)) (i32.const 8))))))
        (i32.store8 (local.get $out) (i32.add (i32.shr_u (local.get $v) (i32.const 18)) (i32.const 0x30)))
        (i32.store8 offset=1 (local.get $out)
          (i32.add (i32.and (i32.shr_u (local.get $v) (i32.const 12)) (i32.const 0x3f)) (i32.const 0x30)))
        (if (i32.eq (local.get $tail) (i32.const 2))
          (then (i32.store8 offset=2 (local.get $out)
                  (i32.add (i32.and (i32.shr_u (local.get $v) (i32.const 6)) (i32.const 0x3f)) (i32.const 0x30))))))))
"""

_TEMPLATE = r"""
(module
  (import "g" "memory" (memory 0))
  (import "g" "handler" (func $guest_handler (param i32) (result i32)))
  (import "g" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
  {post_import}
  (global $original_response (mut i32) (i32.const 0))

{codec}
  (func (export "handler") (param $request i32) (result i32)
    (local $p i32) (local $q i32) (local $chars i32) (local $n i32)
    (local $response i32) (local $text i32) (local $copy i32)
    (if (i32.load8_u offset={req_disc} (local.get $request))
      (then
        (local.set $p (i32.load offset={req_ptr} (local.get $request)))
        (local.set $chars (i32.load offset={req_len} (local.get $request)))
        ;; A 4k+1 length is no encoding of anything and the host never sends one: trap.
        (if (i32.eq (i32.and (local.get $chars) (i32.const 3)) (i32.const 1)) (then unreachable))
        ;; Empty: keep the (empty) block wasmtime allocated, as a list<u8> lowering would.
        (if (local.get $chars)
          (then
            ;; bytes = 3*floor(chars/4) + {{0, -, 1, 2}}[chars % 4]
            (local.set $n (i32.add (i32.mul (i32.shr_u (local.get $chars) (i32.const 2)) (i32.const 3))
              (select (i32.sub (i32.and (local.get $chars) (i32.const 3)) (i32.const 1)) (i32.const 0)
                      (i32.and (local.get $chars) (i32.const 3)))))
            ;; A fresh block of exactly the body's size, like the list<u8> lowering allocates;
            ;; the text block stays allocated until the store is dropped (realloc is never
            ;; asked to move or shrink it: guests implement that path inconsistently).
            (local.set $q (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $n)))
            (call $decode (local.get $p) (local.get $chars) (local.get $q))
            (i32.store offset={req_ptr} (local.get $request) (local.get $q))
            (i32.store offset={req_len} (local.get $request) (local.get $n))))))
    (local.set $response (call $guest_handler (local.get $request)))
    (global.set $original_response (local.get $response))
    (if (i32.eqz (i32.load8_u offset={resp_disc} (local.get $response))) (then (return (local.get $response))))
    (local.set $n (i32.load offset={resp_len} (local.get $response)))
    ;; 4 chars per 3 bytes must fit in u32: a body over 3 GiB cannot exist under any memory
    ;; limit the runner sets, but never wrap around.
    (if (i32.gt_u (local.get $n) (i32.const 0xBFFFFFFC)) (then unreachable))
    ;; chars = 4*floor(n/3) + {{0, 2, 3}}[n % 3]
    (local.set $chars (i32.add (i32.mul (i32.div_u (local.get $n) (i32.const 3)) (i32.const 4))
      (select (i32.add (i32.rem_u (local.get $n) (i32.const 3)) (i32.const 1)) (i32.const 0)
              (i32.rem_u (local.get $n) (i32.const 3)))))
    (local.set $text (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $chars)))
    (call $encode (i32.load offset={resp_ptr} (local.get $response)) (local.get $n) (local.get $text))
    (local.set $copy (call $realloc (i32.const 0) (i32.const 0) (i32.const {resp_align}) (i32.const {resp_size})))
    (memory.copy (local.get $copy) (local.get $response) (i32.const {resp_size}))
    (i32.store offset={resp_ptr} (local.get $copy) (local.get $text))
    (i32.store offset={resp_len} (local.get $copy) (local.get $chars))
    (local.get $copy))

  (func (export "post") (param i32)
    {post_call})
)
"""


def adapter_wat(layout: AdapterLayout) -> str:
    return _TEMPLATE.format(
        codec=CODEC_WAT,
        req_disc=layout.request_body.discriminant, req_ptr=layout.request_body.pointer,
        req_len=layout.request_body.length, resp_disc=layout.response_body.discriminant,
        resp_ptr=layout.response_body.pointer, resp_len=layout.response_body.length,
        resp_size=layout.response_size, resp_align=layout.response_align,
        post_import='(import "g" "post" (func $guest_post (param i32)))' if layout.has_post_return else "",
        post_call="(call $guest_post (global.get $original_response))" if layout.has_post_return else "",
    )


def adapter_module(layout: AdapterLayout) -> bytes:
    return bytes(wat2wasm(adapter_wat(layout)))

#!/usr/bin/env python3
"""Writes the hand-made seed inputs into fuzz/corpus/<target>/seed-*.

Each target reads a few configuration bytes before its payload (see the layout comments in
tests/support/fuzz_checks.rs); the prefixes below follow those layouts. Run from anywhere:
`python3 fuzz/make_seeds.py`. Existing seed files are overwritten; other corpus files are kept.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def sse(*datas, eol="\n", event=None):
    out = ""
    for d in datas:
        if event:
            out += f"event: {event}{eol}"
        out += f"data: {d}{eol}{eol}"
    return out


def chunk(delta=None, finish=None, index=0, **extra):
    c = {"id": "chatcmpl-AyPbt", "object": "chat.completion.chunk", "created": 1739000000,
         "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_72ed7ab54c",
         "choices": [{"index": index, "delta": delta or {}, "logprobs": None,
                      "finish_reason": finish}]}
    c.update(extra)
    return json.dumps(c, separators=(",", ":"))


OPENAI = sse(
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Hello"}),
    chunk({"content": " \"world\""}),
    chunk({}, "stop"),
    json.dumps({"id": "chatcmpl-AyPbt", "object": "chat.completion.chunk", "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
                          "prompt_tokens_details": {"cached_tokens": 0}}}),
    "[DONE]",
)

LLAMA = sse(
    json.dumps({"choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": None}}], "created": 1745000000, "id": "chatcmpl-Xb3", "model": "Qwen3-8B-Q4_K_M.gguf", "system_fingerprint": "b5415-6a2bc8bf", "object": "chat.completion.chunk"}),
    json.dumps({"choices": [{"finish_reason": None, "index": 0, "delta": {"reasoning_content": "The user"}}], "object": "chat.completion.chunk"}),
    json.dumps({"choices": [{"finish_reason": None, "index": 0, "delta": {"reasoning_content": " wants 6*7."}}], "object": "chat.completion.chunk"}),
    json.dumps({"choices": [{"finish_reason": None, "index": 0, "delta": {"content": "42"}}], "object": "chat.completion.chunk"}),
    json.dumps({"choices": [{"finish_reason": "stop", "index": 0, "delta": {}}], "object": "chat.completion.chunk",
                "usage": {"completion_tokens": 9, "prompt_tokens": 14, "total_tokens": 23},
                "timings": {"prompt_n": 14, "prompt_ms": 21.5, "predicted_n": 9, "predicted_per_second": 102.1}}),
)

VLLM = sse(
    json.dumps({"id": "cmpl-9", "object": "chat.completion.chunk", "model": "Qwen/Qwen3-8B", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}),
    json.dumps({"id": "cmpl-9", "choices": [{"index": 0, "delta": {"reasoning": "Think."}, "finish_reason": None}]}),
    json.dumps({"id": "cmpl-9", "choices": [{"index": 0, "delta": {"reasoning": "Think.", "reasoning_content": "Think."}, "finish_reason": None}]}),
    json.dumps({"id": "cmpl-9", "choices": [{"index": 0, "delta": {"content": "Done"}, "finish_reason": "stop", "stop_reason": None}]}),
    "[DONE]",
)

TOOLS = sse(
    chunk({"role": "assistant", "content": None, "tool_calls": [{"index": 0, "id": "call_sF9t", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"lo"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "cation\": \"Pa"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ris\"}"}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_Qx2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\": \"CET\"}"}}]}),
    chunk({"tool_calls": [{"id": "call_g1", "function": {"name": "noindex", "arguments": "{}"}}]}),
    chunk({"tool_calls": [{"index": -1, "function": {"arguments": ""}}]}),
    chunk({}, "tool_calls"),
    "[DONE]",
)

ERRORS = ("event: error\ndata: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"code\":529}}\n\n"
          + sse(json.dumps({"error": {"message": "rate limited", "code": "rate_limit_exceeded"}})))

CRLF = ("id: 1\r\nretry: 3000\r\n" + sse(chunk({"content": "a"}), eol="\r\n")
        + ": ping\r\n\r\nid: 2\r\nevent: message\r\ndata: [DONE]\r\n\r\n")

BOM_COMMENTS = ("\ufeff: keep-alive\n\n:\n: \n:x\r" + "data:  two spaces\rdata\r\r"
                + "id: a\0b\nid\nretry: 12a\nretry:\nretry: 99999999999999999999999\n"
                + "event: add\n\nevent: delta\ndata: {\"content\":\"Hi\"}\n\nfield-only\ndata: tail")

SPEC = "data\n\ndata\ndata\n\ndata:" + "\n\ndata:test\n\ndata: test\n\n" + "data: a\ndata: b\nid: 9\n\n\n"

BAD_UTF8 = b"data: caf\xc3\xa9 \xff\xfe \xe2\x82\n\nevent: \xf0\x9f\x98\nid: \xed\xa0\x80\ndata: x\n\n\xef\xbb"

STREAMS = {
    "openai": OPENAI.encode(), "llamacpp": LLAMA.encode(), "vllm": VLLM.encode(),
    "tools": TOOLS.encode(), "errors": ERRORS.encode(), "crlf": CRLF.encode(),
    "bom_comments": BOM_COMMENTS.encode(), "spec": SPEC.encode(), "bad_utf8": BAD_UTF8,
}

COMPLETION = json.dumps({
    "id": "chatcmpl-C1", "object": "chat.completion", "created": 1739000002, "model": "gpt-4o",
    "choices": [
        {"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": {"b": 2}}}]},
         "finish_reason": "tool_calls"},
        {"index": 0, "message": {"role": "assistant", "content": "Hi", "reasoning": "hm"},
         "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode()
TRUNCATED = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [
    {"id": "c", "function": {"name": "f", "arguments": "{\"a\": "}}]}, "finish_reason": "length"}]}).encode()
ERROR_BODY = b'{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}'


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    for name, s in STREAMS.items():
        # sse_differential: [flags: 0x10 small limits | number of sizes][limits][sizes][stream]
        write("sse_differential", name + "-whole", b"\x00" + s)
        write("sse_differential", name + "-split", b"\x04\x01\x07\x00\x03" + s)
        # sse_reader: [sel: limits, capacity][n][plan][stream]
        write("sse_reader", name, b"\x00\x00" + s)
        write("sse_reader", name + "-tiny-reads", b"\x30\x04\x00\xff\x05\x02" + s)
        # chat_stream, raw SSE body: [mode 0][sel][body]
        write("chat_stream", name, b"\x00\x00" + s)
    write("sse_differential", "small-limits", b"\x12\x10\x04\x05\x09" + OPENAI.encode())
    write("sse_reader", "fatal-error", b"\x00\x03\x20\xfe\x10" + TOOLS.encode())
    write("sse_reader", "line-limit", b"\x05\x00" + LLAMA.encode())
    write("chat_stream", "openai-usage", b"\x00\x40" + OPENAI.encode())
    write("chat_stream", "tools-limits", b"\x00\x15" + TOOLS.encode())
    write("chat_stream", "completion", b"\x02\x00" + COMPLETION)
    write("chat_stream", "completion-truncated", b"\x02\x00" + TRUNCATED)
    write("chat_stream", "error-body", b"\x02\x00" + ERROR_BODY)
    rng = random.Random(7)
    for i in range(4):
        write("chat_stream", f"generated-stream-{i}", bytes([1, rng.randrange(256)]) + rng.randbytes(200))
        write("chat_stream", f"generated-completion-{i}", bytes([3, 0]) + rng.randbytes(120))
        write("retry_headers", f"random-{i}", rng.randbytes(96))
    # retry_headers: now = fixed 2025-01-01; retry-after-ms absent; Retry-After as raw text;
    # x-should-retry "true"; then date, policy and backoff bytes.
    date = b"Sun, 06 Nov 1994 08:49:37 GMT"
    write("retry_headers", "http-date", b"\x03\x00\x01" + bytes([len(date)]) + date + b"\x06\x00" + bytes(range(64)))
    secs = b"120"
    write("retry_headers", "seconds", b"\x03\x01\x03" + secs + b"\x00\x00" + bytes(range(64, 0, -1)))


if __name__ == "__main__":
    main()

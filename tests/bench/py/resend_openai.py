"""The official OpenAI Python SDK streaming one answer, and sending the whole request again
when the stream breaks, which is what a caller of the SDK does: its own retries cover a
request that fails before the response starts, not a stream cut in the middle.

usage: python resend_openai.py BASE_URL REQUEST_JSON [API_KEY]
REQUEST_JSON is the chat request's body (`stream` true). Prints one JSON line:
{"wall_s", "attempts", "errors", "answer", "shown"}: the time from the first request to the
end of the last answer, the requests sent, the exception of each break, the last attempt's
text, and all text shown to the reader (a broken attempt's part included).
"""

import json
import sys
import time

from openai import OpenAI

MAX_ATTEMPTS = 3
# What `create` takes as keyword arguments; anything else goes in `extra_body`.
KNOWN = {
    "model",
    "messages",
    "temperature",
    "seed",
    "max_tokens",
    "stream",
    "stream_options",
}

base_url, body = sys.argv[1], json.loads(sys.argv[2])
api_key = sys.argv[3] if len(sys.argv) > 3 else "x"
kwargs = {k: v for k, v in body.items() if k in KNOWN}
extra = {k: v for k, v in body.items() if k not in KNOWN}
client = OpenAI(base_url=base_url, api_key=api_key, timeout=300.0)

shown = []
errors = []
attempts = 0
start = time.perf_counter()
while True:
    attempts += 1
    answer = []
    try:
        stream = client.chat.completions.create(**kwargs, extra_body=extra or None)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                answer.append(chunk.choices[0].delta.content)
                shown.append(chunk.choices[0].delta.content)
        break
    except Exception as e:  # noqa: BLE001 - the break surfaces as httpx's or openai's error
        errors.append(type(e).__name__)
        if attempts >= MAX_ATTEMPTS:
            raise
wall = time.perf_counter() - start
print(
    json.dumps(
        {
            "wall_s": wall,
            "attempts": attempts,
            "errors": errors,
            "answer": "".join(answer),
            "shown": "".join(shown),
        }
    )
)

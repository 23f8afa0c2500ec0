"""Many short streamed calls on one OpenAI client (one httpx connection pool).

usage: python calls_openai.py BASE_URL CALLS WARM_UP [CA_FILE]
Makes WARM_UP calls, then CALLS timed ones, and prints
"<median µs per call> <most OS threads beyond the count before the timed calls> <reply length>
<openai version>".
"""

import os
import ssl
import statistics
import sys
import time

import openai
from openai import OpenAI

base_url, calls, warm_up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ca_file = sys.argv[4] if len(sys.argv) > 4 else None
# The SDK's own default client class (httpx, or its httpx2 fork in newer releases), so the
# pool and settings are the SDK's; only the trusted CA differs.
Http = getattr(openai, "DefaultHttpx2Client", None) or openai.DefaultHttpxClient
http_client = Http(verify=ssl.create_default_context(cafile=ca_file)) if ca_file else None
client = OpenAI(base_url=base_url, api_key="x", http_client=http_client, max_retries=0)


calls_made = 0


def call():
    global calls_made
    calls_made += 1
    stream = client.chat.completions.create(
        model="mock-model",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        # As oai-sse sends: the server then does the same work for every client.
        extra_headers={"X-Conversation-Id": f"bench-py-{calls_made}"},
    )
    parts = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def threads():
    return len(os.listdir("/proc/self/task"))


for _ in range(warm_up):
    call()
before = threads()
most = before
times = []
text = ""
for _ in range(calls):
    start = time.perf_counter_ns()
    text = call()
    times.append(time.perf_counter_ns() - start)
    most = max(most, threads())
print(statistics.median(times) / 1000, most - before, len(text), openai.__version__)

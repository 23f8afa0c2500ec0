"""The official OpenAI Python SDK's synchronous streaming client, reading one completion.

usage: python stream_openai.py BASE_URL
Prints "<chunks> <length of the joined content>".
"""

import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="x")
stream = client.chat.completions.create(
    model="mock-model",
    messages=[{"role": "user", "content": "hi"}],
    stream=True,
)
chunks = 0
parts = []
for chunk in stream:
    chunks += 1
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
text = "".join(parts)
print(chunks, len(text))

"""The official `anthropic` Python SDK against the Portcullis gateway, unmodified.

Driven by crates/server/tests/it/sdk.rs, one process per SDK version (importing the SDK takes
seconds): it reads a scenario name per line on stdin and answers one JSON line on stdout, so
the driver can script the fake upstream between scenarios.

    python anthropic_sdk.py      (then: create\nstream_text\n...)

Environment: GATEWAY_BASE_URL (".../gateway"), GATEWAY_TOKEN (an API token of an
environment with its own key), SESSION_TOKEN (a session: refused), KEYLESS_TOKEN (an API
token of another environment with no key and no trial: refused). Each answer is the JSON of
what it saw, or {"failed": reason}.
"""

import json
import os
import sys

import anthropic

BASE = os.environ["GATEWAY_BASE_URL"]
TEXT = "Hello from the fake upstream."
MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "say hello"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def client(token=None, **kw):
    return anthropic.Anthropic(base_url=BASE, api_key=token or os.environ["GATEWAY_TOKEN"], **kw)


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


def create():
    m = client().messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    expect(m.content[0].text == TEXT, f"text {m.content!r}")
    expect(m.usage.output_tokens == 7, f"usage {m.usage!r}")
    return {"id": m.id, "stop_reason": m.stop_reason}


def stream_text():
    with client().messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    expect("".join(pieces) == TEXT, f"pieces {pieces!r}")
    expect(len(pieces) == 3, f"relayed as one piece: {pieces!r}")
    expect(final.usage.output_tokens == 7, f"final usage {final.usage!r}")
    return {"pieces": len(pieces)}


def stream_tool():
    raw = client().messages.create(model=MODEL, max_tokens=64, messages=HELLO, tools=TOOLS, stream=True)
    kinds, partial = [], []
    for event in raw:
        kinds.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            partial.append(event.delta.partial_json)
    expect(len(partial) == 2, f"input_json_delta pieces {partial!r}")
    expect(json.loads("".join(partial)) == {"city": "Paris", "unit": "celsius"}, f"{partial!r}")
    expect(kinds[0] == "message_start" and kinds[-1] == "message_stop", f"{kinds!r}")
    with client().messages.stream(model=MODEL, max_tokens=64, messages=HELLO, tools=TOOLS) as s:
        final = s.get_final_message()
    expect(final.content[0].type == "tool_use" and final.content[0].input["city"] == "Paris", f"{final.content!r}")
    return {"events": kinds}


def count_tokens():
    n = client().messages.count_tokens(model=MODEL, messages=HELLO)
    expect(n.input_tokens > 0, f"{n!r}")
    return {"input_tokens": n.input_tokens}


def models():
    ids = [m.id for m in client().models.list()]
    expect(MODEL in ids, f"{ids!r}")
    expect(ids[:3] == ["tier:fast", "tier:balanced", "tier:deep"], f"tiers first: {ids!r}")
    return {"models": ids}


def tier():
    # M3: a tier name is a model name to the SDK; the answer names the concrete model.
    m = client().messages.create(model="tier:fast", max_tokens=64, messages=HELLO)
    expect(m.model == MODEL, f"model {m.model!r}")
    return {"model": m.model}


def unknown_tier():
    # M3: a 400 the SDK raises at once (x-should-retry: false, and 400 is never retried).
    try:
        client(max_retries=2).messages.create(model="tier:cheap", max_tokens=64, messages=HELLO)
    except anthropic.BadRequestError as e:
        expect("tier:fast" in str(e), f"{e!r}")
        return {"status": e.status_code, "type": e.body.get("error", {}).get("type")}
    raise Failed("an unknown tier did not raise")


def retried():
    # The driver made the upstream answer 529 or 429 once: the SDK retries and succeeds.
    m = client(max_retries=2).messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    expect(m.content[0].text == TEXT, f"{m.content!r}")
    return {"ok": True}


def mid_stream_error():
    try:
        with client().messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as s:
            for _ in s.text_stream:
                pass
    except anthropic.APIError as e:
        expect("Overloaded" in str(e), f"{e!r}")
        return {"raised": type(e).__name__}
    raise Failed("a mid-stream error event did not raise")


def refused(token, cls, status):
    try:
        client(token, max_retries=2).messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    except cls as e:
        expect(e.status_code == status, f"status {e.status_code}")
        expect(e.response.headers.get("request-id"), "no request-id header")
        body = e.body if isinstance(e.body, dict) else {}
        return {"status": e.status_code, "type": body.get("error", {}).get("type"), "code": body.get("error", {}).get("code")}
    raise Failed(f"no {cls.__name__}")


SCENARIOS = {
    "create": create,
    "stream_text": stream_text,
    "stream_tool": stream_tool,
    "count_tokens": count_tokens,
    "models": models,
    "tier": tier,
    "unknown_tier": unknown_tier,
    "retried": retried,
    "mid_stream_error": mid_stream_error,
    "invalid_token": lambda: refused("pcs_live_" + "A" * 43, anthropic.AuthenticationError, 401),
    "session_token": lambda: refused(os.environ["SESSION_TOKEN"], anthropic.PermissionDeniedError, 403),
    "keyless_environment": lambda: refused(os.environ["KEYLESS_TOKEN"], anthropic.PermissionDeniedError, 403),
}

if __name__ == "__main__":
    for line in sys.stdin:
        name = line.strip()
        try:
            result = SCENARIOS[name]()
        except Exception as e:  # the driver prints it and fails
            result = {"failed": f"{name}: {type(e).__name__}: {e}"}
        result["sdk"] = anthropic.__version__
        print(json.dumps(result), flush=True)

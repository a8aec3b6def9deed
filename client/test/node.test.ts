/**
 * createNodeSession's cookie jar, with a recording fetch underneath: what a Node client
 * sends the BFF, and nobody else. (test/node-example.test.ts runs it against the real BFF.)
 */
import { describe, expect, it } from "vitest";
import { createNodeSession } from "../src/node.js";
import type { SessionFetch } from "../src/node.js";

const BFF = "http://127.0.0.1:8080";

/** Answers each request with the Set-Cookie lines queued for it; records the Cookie sent. */
function recordingFetch(setCookies: string[][]): { fetch: SessionFetch; sent: (string | null)[] } {
  const sent: (string | null)[] = [];
  const fetch: SessionFetch = (_input, init) => {
    sent.push(new Headers(init?.headers).get("Cookie"));
    const headers = new Headers();
    for (const line of setCookies.shift() ?? []) headers.append("Set-Cookie", line);
    return Promise.resolve(new Response("{}", { status: 200, headers }));
  };
  return { fetch, sent };
}

class RecordingEventSource {
  static last: { url: string; fetch: SessionFetch | undefined } | undefined;
  readonly readyState = 0;
  onopen = null;
  onmessage = null;
  onerror = null;
  constructor(url: string, init?: { fetch?: SessionFetch }) {
    RecordingEventSource.last = { url, fetch: init?.fetch };
  }
  close(): void {}
}

describe("createNodeSession", () => {
  it("keeps the BFF's session cookie and sends it back on every request and every stream", async () => {
    const { fetch, sent } = recordingFetch([["exportstream_session=abc; Path=/; HttpOnly; SameSite=Lax"], [], []]);
    const session = createNodeSession({ baseUrl: `${BFF}/`, EventSource: RecordingEventSource, fetch });
    expect(session.baseUrl).toBe(BFF);

    await session.fetch(`${BFF}/api/exports`, { method: "POST" });
    await session.fetch(`${BFF}/api/exports`);
    new session.EventSource(`${BFF}/api/events`);
    const streamFetch = RecordingEventSource.last?.fetch;
    expect(streamFetch).toBeTypeOf("function");
    await streamFetch?.(`${BFF}/api/events`, { headers: { Accept: "text/event-stream" } });

    expect(sent).toEqual([null, "exportstream_session=abc", "exportstream_session=abc"]);
  });

  it("neither keeps nor sends cookies of another origin", async () => {
    const { fetch, sent } = recordingFetch([["exportstream_session=abc"], ["tracker=1"], [], []]);
    const session = createNodeSession({ baseUrl: BFF, EventSource: RecordingEventSource, fetch });
    await session.fetch(`${BFF}/api/exports`);
    await session.fetch("http://127.0.0.1:9999/elsewhere");
    await session.fetch("http://127.0.0.1:9999/elsewhere");
    await session.fetch(`${BFF}/api/exports`);
    expect(sent).toEqual([null, null, null, "exportstream_session=abc"]);
  });

  it("drops a cookie the BFF expires (Max-Age=0, Expires in the past) and replaces a renewed one", async () => {
    const { fetch, sent } = recordingFetch([
      ["a=1", "b=2"],
      ["a=; Max-Age=0", "b=3"],
      ["b=4; Expires=Thu, 01 Jan 1970 00:00:00 GMT"],
      [],
    ]);
    const session = createNodeSession({ baseUrl: BFF, EventSource: RecordingEventSource, fetch });
    for (let i = 0; i < 4; i++) await session.fetch(`${BFF}/api/exports`);
    expect(sent).toEqual([null, "a=1; b=2", "b=3", null]);
  });
});

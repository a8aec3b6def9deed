/**
 * The BFF relays the backend's events unchanged: the scripted backend of
 * transparency-cases.ts sends tricky SSE on its multiplexed stream, the real BFF binary
 * relays it, and the `eventsource` npm client — what Node users and the integration
 * tests use — must dispatch what a spec-following reader of the job's own events would
 * ([type, lastEventId, data] per event). Chromium reads the same table
 * (transparency-browser.test.ts); the Go side reads through the BFF with go-sse
 * (bff/internal/httpapi).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codeOf, cookieFetch } from "./fakes.js";
import type { NodeFetch } from "./fakes.js";
import { EventSource } from "eventsource";
import { externalBffUrl, missingPrerequisites, prerequisites } from "./servers.js";
import { cases, eventTypes, startScriptedBff } from "./transparency-cases.js";
import type { ScriptedBff } from "./transparency-cases.js";

const missing = externalBffUrl ? [] : missingPrerequisites();
const skipped = prerequisites("transparency tests (real BFF binary)", missing);

describe.skipIf(skipped !== undefined || externalBffUrl !== undefined)("the BFF relays the wire transparently", () => {
  let scripted: ScriptedBff;
  let fetchImpl: NodeFetch;

  beforeAll(async () => {
    scripted = await startScriptedBff();
    fetchImpl = cookieFetch();
    // The session: the BFF sets its cookie on the create (answered by the script).
    await fetchImpl(`${scripted.bff.bffUrl}/api/exports`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: '{"rows":1,"durationMs":0}',
    });
  });

  afterAll(async () => {
    await scripted?.stop();
  });

  cases.forEach(([name, script, want], i) => {
    it(name, async () => {
      const code = codeOf(i + 1);
      scripted.script(code, script);
      const source = new EventSource(`${scripted.bff.bffUrl}/api/exports/${code}/events`, { fetch: fetchImpl });
      const got: [type: string, lastEventId: string, data: string][] = [];
      // Read until the BFF ends the job's stream (the client then reconnects: an error
      // with readyState CONNECTING), bounded.
      const end = await new Promise<string>((done) => {
        const timer = setTimeout(() => done("no end of the stream within 10 s"), 10_000);
        const finish = (how: string): void => {
          clearTimeout(timer);
          done(how);
        };
        const record = (event: MessageEvent): void => {
          got.push([event.type, event.lastEventId, String(event.data)]);
        };
        source.onmessage = record;
        for (const type of eventTypes) source.addEventListener(type, record);
        source.onerror = () => finish(source.readyState === EventSource.CONNECTING ? "ended" : "failed");
      }).finally(() => source.close());
      expect({ events: got, end }).toEqual({ events: want, end: "ended" });
    });
  });
});

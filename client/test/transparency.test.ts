/**
 * The BFF relays the backend's events unchanged: a scripted backend (a Node server
 * of this test) sends tricky SSE on its multiplexed stream (docs/multiplexed-stream.md),
 * the real BFF binary relays it, and the `eventsource` npm client — what Node users and
 * the integration tests use — must see what a spec-following reader of the job's own
 * events would. The Go side of
 * the same table reads through the BFF with go-sse (bff/internal/httpapi).
 */
import { createServer } from "node:http";
import type { Server, ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cookieFetch } from "./node-env.js";
import type { NodeFetch } from "./node-env.js";
import { EventSource } from "eventsource";
import { externalBffUrl, inCI, missingPrerequisites, reportMissing, startBffAgainst } from "./servers.js";
import type { Servers } from "./servers.js";

const missing = externalBffUrl ? [] : missingPrerequisites();
const skipped = reportMissing("transparency tests (real BFF binary)", missing);
if (skipped !== undefined) {
  describe("transparency prerequisites", () => {
    if (inCI) it("are present (CI=true makes a missing one a failure)", () => expect.fail(skipped));
    else it.skip(`are missing, so the suite is skipped: ${skipped}`, () => {});
  });
}

const long = "x".repeat(100_000);

/** One event of a job's stream as an envelope of the backend's multiplexed stream. */
function envelope(owner: string, code: string, fields: { id?: string; data?: string }): string {
  return JSON.stringify({ owner, code, ...fields });
}

/**
 * name, the backend's bytes on its multiplexed stream for the subscribed job (in
 * writes; the wire's oddities in its framing, the job's events in envelopes), what
 * the browser sees as [lastEventId, data]. Every stream also starts with a byte order
 * mark and a `retry:` that is not a number.
 */
type Script = (owner: string, code: string) => string[];
const one = (owner: string, code: string): string => envelope(owner, code, { id: "1", data: "a" });
const cases: [string, Script, [string, string][]][] = [
  ["LF line endings", (o, c) => [`data: ${one(o, c)}\n\n`], [["1", "a"]]],
  ["CRLF line endings", (o, c) => [`data: ${one(o, c)}\r\n\r\n`], [["1", "a"]]],
  ["CR line endings", (o, c) => [`data: ${one(o, c)}\r\r`], [["1", "a"]]],
  ["multi-line data", (o, c) => [`data: ${envelope(o, c, { id: "2", data: "one\ntwo" })}\n\n`], [["2", "one\ntwo"]]],
  ["data without the space", (o, c) => [`data:${one(o, c)}\n\n`], [["1", "a"]]],
  ["a leading space in data is kept", (o, c) => [`data: ${envelope(o, c, { id: "1", data: " x" })}\n\n`], [["1", " x"]]],
  ["comments", (o, c) => [`: hi\ndata: ${one(o, c)}\n\n`], [["1", "a"]]],
  [
    "an id containing NUL is ignored",
    (o, c) => [`data: ${one(o, c)}\n\ndata: ${envelope(o, c, { id: "2\u00003", data: "b" })}\n\n`],
    [["1", "a"], ["1", "b"]],
  ],
  [
    "an empty id resets the last event id",
    (o, c) => [`data: ${one(o, c)}\n\ndata: ${envelope(o, c, { id: "", data: "b" })}\n\n`],
    [["1", "a"], ["", "b"]],
  ],
  ["an empty data field is dispatched", (o, c) => [`data: ${envelope(o, c, { id: "1", data: "" })}\n\n`], [["1", ""]]],
  [
    "an event without data is not dispatched, its id is kept",
    (o, c) => [`data: ${envelope(o, c, { id: "5" })}\n\ndata: ${envelope(o, c, { data: "b" })}\n\n`],
    [["5", "b"]],
  ],
  ["a field without a colon (data \"\\nx\")", (o, c) => [`data: ${envelope(o, c, { id: "1", data: "\nx" })}\n\n`], [["1", "\nx"]]],
  ["unicode", (o, c) => [`data: ${envelope(o, c, { id: "1", data: "日本語 ✓ 🚀" })}\n\n`], [["1", "日本語 ✓ 🚀"]]],
  ["a very long line", (o, c) => [`data: ${envelope(o, c, { id: "1", data: long })}\n\n`], [["1", long]]],
  [
    "an event split across writes",
    (o, c) => {
      const line = `data: ${envelope(o, c, { id: "1", data: "ab" })}`;
      return [line.slice(0, 9), line.slice(9, 30), line.slice(30) + "\n", "\n"];
    },
    [["1", "ab"]],
  ],
];

describe.skipIf(skipped !== undefined || externalBffUrl !== undefined)("the BFF relays the wire transparently", () => {
  const scripts = new Map<string, Script>();
  const streams = new Set<ServerResponse>();
  let backend: Server;
  let bff: Servers;
  let fetchImpl: NodeFetch;

  beforeAll(async () => {
    // The scripted backend: the BFF's multiplexed stream stays open; a job's
    // subscription (PUT) is answered 204 and its script written on the stream.
    backend = createServer((req, res) => {
      const url = req.url ?? "";
      if (req.method === "POST") {
        res.writeHead(202, { "Content-Type": "application/json" }).end(`{"code":"${codeOf(0)}","status":"PENDING"}`);
        return;
      }
      if (req.method === "GET" && url === "/v1/events") {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write('\ufeffretry: soon\n\nevent: stream\ndata: {"stream":"s1"}\n\n');
        streams.add(res);
        res.on("close", () => streams.delete(res));
        return;
      }
      const code = /^\/v1\/events\/s1\/subscriptions\/([^/]+)$/.exec(url)?.[1];
      const owner = req.headers["x-export-owner"];
      res.writeHead(code === undefined ? 404 : 204).end();
      const script = code === undefined ? undefined : scripts.get(code);
      if (req.method !== "PUT" || code === undefined || script === undefined || typeof owner !== "string") return;
      scripts.delete(code);
      for (const stream of streams) for (const piece of script(owner, code)) stream.write(piece);
    });
    await new Promise<void>((done) => backend.listen(0, "127.0.0.1", done));
    const address = backend.address();
    const port = typeof address === "object" && address ? address.port : 0;
    bff = await startBffAgainst(`http://127.0.0.1:${port}`);
    fetchImpl = cookieFetch();
    // The session: the BFF sets its cookie on the create (answered by the script).
    await fetchImpl(`${bff.bffUrl}/api/exports`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: '{"rows":1,"durationMs":0}',
    });
  });

  afterAll(async () => {
    await bff?.stop();
    backend?.closeAllConnections();
    await new Promise((done) => backend?.close(done));
  });

  cases.forEach(([name, script, want], i) => {
    it(name, async () => {
      const code = codeOf(i + 1);
      scripts.set(code, script);
      const source = new EventSource(`${bff.bffUrl}/api/exports/${code}/events`, { fetch: fetchImpl });
      const got: [string, string][] = [];
      await new Promise<void>((done, fail) => {
        source.onmessage = (event) => {
          got.push([event.lastEventId, event.data]);
          if (got.length === want.length) done();
        };
        source.onerror = () => {
          if (source.readyState === EventSource.CLOSED) fail(new Error(`stream closed after ${got.length} events`));
        };
      }).finally(() => source.close());
      expect(got).toEqual(want);
    });
  });
});

function codeOf(i: number): string {
  return `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
}

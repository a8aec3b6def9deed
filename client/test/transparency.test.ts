/**
 * The BFF relays the backend's events byte for byte: a scripted backend (a Node
 * server of this test) sends tricky SSE, the real BFF binary relays it, and the
 * `eventsource` npm client — what Node users and the integration tests use — must
 * see what a spec-following reader of the backend's bytes would. The Go side of
 * the same table reads through the BFF with go-sse (bff/internal/httpapi).
 */
import { createServer } from "node:http";
import type { Server } from "node:http";
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
/** name, the backend's bytes (in writes), what the browser sees as [lastEventId, data]. */
const cases: [string, string[], [string, string][]][] = [
  ["LF line endings", ["id: 1\ndata: a\n\n"], [["1", "a"]]],
  ["CRLF line endings", ["id: 1\r\ndata: a\r\n\r\n"], [["1", "a"]]],
  ["CR line endings", ["id: 1\rdata: a\r\r"], [["1", "a"]]],
  ["multi-line data", ["id: 2\ndata: one\ndata: two\n\n"], [["2", "one\ntwo"]]],
  ["data without the space", ["id: 1\ndata:x\n\n"], [["1", "x"]]],
  ["two leading spaces keep one", ["id: 1\ndata:  x\n\n"], [["1", " x"]]],
  ["comments", [": hi\nid: 1\ndata: a\n\n"], [["1", "a"]]],
  ["an id containing NUL is ignored", ["id: 1\ndata: a\n\nid: 2\u00003\ndata: b\n\n"], [["1", "a"], ["1", "b"]]],
  ["a byte order mark", ["\ufeffid: 1\ndata: a\n\n"], [["1", "a"]]],
  ["a field without a colon", ["id: 1\ndata\ndata: x\n\n"], [["1", "\nx"]]],
  ["unicode", ["id: 1\ndata: 日本語 ✓ 🚀\n\n"], [["1", "日本語 ✓ 🚀"]]],
  ["a very long line", ["id: 1\ndata: " + long + "\n\n"], [["1", long]]],
  ["an event split across writes", ["id: 1\nda", "ta: a", "b\n", "\n"], [["1", "ab"]]],
  ["retry with junk", ["retry: soon\nid: 1\ndata: a\n\n"], [["1", "a"]]],
];

describe.skipIf(skipped !== undefined || externalBffUrl !== undefined)("the BFF relays the wire transparently", () => {
  const scripts = new Map<string, string[]>();
  let backend: Server;
  let bff: Servers;
  let fetchImpl: NodeFetch;

  beforeAll(async () => {
    // The scripted backend: the first events request of a code gets its script;
    // the relay's reconnections then wait (the response stays open).
    backend = createServer((req, res) => {
      if (req.method === "POST") {
        res.writeHead(202, { "Content-Type": "application/json" }).end(`{"code":"${codeOf(0)}","status":"PENDING"}`);
        return;
      }
      const code = /\/v1\/exports\/([^/]+)\/events/.exec(req.url ?? "")?.[1] ?? "";
      const pieces = scripts.get(code);
      scripts.delete(code);
      if (pieces === undefined) return; // hold the reconnection open until the test ends
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      for (const piece of pieces) res.write(piece);
      res.end();
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

  cases.forEach(([name, pieces, want], i) => {
    it(name, async () => {
      const code = codeOf(i + 1);
      scripts.set(code, pieces);
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

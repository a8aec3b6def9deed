/**
 * The wire-transparency table and the scripted backend it runs on, shared by the readers
 * that read it through the real BFF binary: the `eventsource` npm client
 * (transparency.test.ts) and Chromium's own EventSource (transparency-browser.test.ts).
 * The Go side of the same table reads through the BFF with go-sse
 * (bff/internal/httpapi/transparency_test.go).
 *
 * The scripted backend (a Node server) sends tricky SSE on its multiplexed stream
 * (docs/multiplexed-stream.md): when the BFF subscribes a job's code, the case's bytes,
 * then the end of the job's stream (`end: "done"`), which the BFF answers by ending the
 * job's stream: a reader reads until then, so an event too many shows as well as one
 * too few.
 */
import { createServer } from "node:http";
import type { Server, ServerResponse } from "node:http";
import { startBffAgainst } from "./servers.js";
import type { Servers } from "./servers.js";

/**
 * Every event type the table's scripts use. An EventSource has no catch-all listener: a
 * reader listens for each of these (and `message`), so that an event dispatched with the
 * wrong type, or one that should not be dispatched at all, is seen.
 */
export const eventTypes = ["progress", "x", "reset"] as const;
export type EventType = (typeof eventTypes)[number];

/** One event as an EventSource dispatches it: [type, lastEventId, data]. */
export type Dispatched = [type: "message" | EventType, lastEventId: string, data: string];

/** A job's event as the envelope carries it; an absent field is no such field. */
interface JobEvent {
  readonly id?: string;
  readonly event?: EventType;
  readonly data?: string;
}

/** One event of a job's stream as an envelope of the backend's multiplexed stream. */
function envelope(owner: string, code: string, fields: JobEvent): string {
  return JSON.stringify({ owner, code, ...fields });
}

/**
 * The backend's bytes on its multiplexed stream for the subscribed job, in writes: the
 * wire's oddities in its framing, the job's events in envelopes.
 */
export type Script = (owner: string, code: string) => string[];

/**
 * name, script, what a spec-following reader of the job's own stream dispatches. Every
 * stream also starts with a byte order mark and a `retry:` that is not a number.
 */
export type Case = readonly [name: string, script: Script, want: readonly Dispatched[]];

const long = "x".repeat(100_000);
const one = (owner: string, code: string): string => envelope(owner, code, { id: "1", data: "a" });
/** Events on the multiplexed stream, one unnamed SSE event per envelope. */
const events =
  (...fields: JobEvent[]): Script =>
  (o, c) =>
    [fields.map((each) => `data: ${envelope(o, c, each)}\n\n`).join("")];

export const cases: readonly Case[] = [
  ["LF line endings", (o, c) => [`data: ${one(o, c)}\n\n`], [["message", "1", "a"]]],
  ["CRLF line endings", (o, c) => [`data: ${one(o, c)}\r\n\r\n`], [["message", "1", "a"]]],
  ["CR line endings", (o, c) => [`data: ${one(o, c)}\r\r`], [["message", "1", "a"]]],
  ["multi-line data", events({ id: "2", data: "one\ntwo" }), [["message", "2", "one\ntwo"]]],
  ["multi-line data with empty lines", events({ id: "8", data: "\na\n\n" }), [["message", "8", "\na\n\n"]]],
  ["data without the space", (o, c) => [`data:${one(o, c)}\n\n`], [["message", "1", "a"]]],
  ["a leading space in data is kept", events({ id: "1", data: " x" }), [["message", "1", " x"]]],
  ["data that is only spaces", events({ id: "1", data: "   " }), [["message", "1", "   "]]],
  ["comments", (o, c) => [`: hi\ndata: ${one(o, c)}\n\n`], [["message", "1", "a"]]],
  [
    "an id containing NUL is ignored",
    events({ id: "1", data: "a" }, { id: "2\u00003", data: "b" }),
    [
      ["message", "1", "a"],
      ["message", "1", "b"],
    ],
  ],
  [
    "an empty id resets the last event id",
    events({ id: "1", data: "a" }, { id: "", data: "b" }),
    [
      ["message", "1", "a"],
      ["message", "", "b"],
    ],
  ],
  [
    "an id carries over to the next event",
    events({ id: "7", data: "a" }, { data: "b" }),
    [
      ["message", "7", "a"],
      ["message", "7", "b"],
    ],
  ],
  ["an empty data field is dispatched", events({ id: "1", data: "" }), [["message", "1", ""]]],
  ["an event without data is not dispatched, its id is kept", events({ id: "5" }, { data: "b" }), [["message", "5", "b"]]],
  ["an event type", events({ event: "progress", id: "2", data: "a" }), [["progress", "2", "a"]]],
  [
    "event types change from event to event",
    events({ event: "progress", id: "1", data: "a" }, { id: "2", data: "b" }, { event: "x", id: "3", data: "c" }),
    [
      ["progress", "1", "a"],
      ["message", "2", "b"],
      ["x", "3", "c"],
    ],
  ],
  ["an event type with empty data", events({ event: "progress", id: "4", data: "" }), [["progress", "4", ""]]],
  ["a type with no data is not dispatched and does not stick", events({ event: "x" }, { data: "a" }), [["message", "", "a"]]],
  ["a type and an id with no data: only the id counts", events({ event: "x", id: "9" }, { data: "z" }), [["message", "9", "z"]]],
  [
    "a type, an id reset and empty data together",
    events({ id: "1", data: "a" }, { event: "reset", id: "", data: "" }),
    [
      ["message", "1", "a"],
      ["reset", "", ""],
    ],
  ],
  [
    "after an id reset, an event without an id keeps the empty one",
    events({ id: "1", data: "a" }, { id: "" }, { event: "progress", data: "b" }),
    [
      ["message", "1", "a"],
      ["progress", "", "b"],
    ],
  ],
  ["a field without a colon (data \"\\nx\")", events({ id: "1", data: "\nx" }), [["message", "1", "\nx"]]],
  ["unicode", events({ id: "1", data: "日本語 ✓ 🚀" }), [["message", "1", "日本語 ✓ 🚀"]]],
  ["a very long line", events({ id: "1", data: long }), [["message", "1", long]]],
  [
    "an event split across writes",
    (o, c) => {
      const line = `data: ${envelope(o, c, { id: "1", data: "ab" })}`;
      return [line.slice(0, 9), line.slice(9, 30), line.slice(30) + "\n", "\n"];
    },
    [["message", "1", "ab"]],
  ],
];

/** The i-th code of a run (0: the create's). */
export function codeOf(i: number): string {
  return `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
}

/** The real BFF binary in front of the scripted backend. */
export interface ScriptedBff {
  readonly bff: Servers;
  /**
   * What the backend sends for code when the BFF subscribes it (once), followed by the
   * end of the job's stream.
   */
  script(code: string, script: Script): void;
  stop(): Promise<void>;
}

/**
 * Starts the scripted backend and the BFF in front of it. A create (`POST`) is answered
 * 202 with {@link codeOf}(0), which lets a reader get the BFF's session cookie.
 */
export async function startScriptedBff(): Promise<ScriptedBff> {
  const scripts = new Map<string, Script>();
  const streams = new Set<ServerResponse>();
  // The BFF's multiplexed stream stays open; a job's subscription (PUT) is answered 204
  // and its script written on the stream, then the job's end.
  const backend: Server = createServer((req, res) => {
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
    const end = `data: ${JSON.stringify({ owner, code, end: "done" })}\n\n`;
    for (const stream of streams) for (const piece of [...script(owner, code), end]) stream.write(piece);
  });
  await new Promise<void>((done) => backend.listen(0, "127.0.0.1", done));
  const address = backend.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const stopBackend = async (): Promise<void> => {
    backend.closeAllConnections();
    await new Promise((done) => backend.close(done));
  };
  let bff: Servers;
  try {
    bff = await startBffAgainst(`http://127.0.0.1:${port}`);
  } catch (error) {
    await stopBackend();
    throw error;
  }
  return {
    bff,
    script: (code, script) => scripts.set(code, script),
    stop: async () => {
      await bff.stop();
      await stopBackend();
    },
  };
}

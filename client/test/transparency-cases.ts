/**
 * The wire-transparency table, shared by the readers that read it through the real BFF
 * binary: the `eventsource` npm client (transparency.test.ts) and Chromium's own
 * EventSource (transparency-browser.test.ts). The Go side of the same table reads
 * through the BFF with go-sse (bff/internal/httpapi/transparency_test.go).
 *
 * The scripted backend (fakes.ts) sends a case's bytes on its multiplexed stream when
 * the BFF subscribes the case's code, then the end of the job's stream, which the BFF
 * answers by ending the job's stream: a reader reads until then, so an event too many
 * shows as well as one too few.
 */
import { startScriptedBackend } from "./fakes.js";
import type { Script } from "./fakes.js";
import { startBffAgainst } from "./servers.js";
import type { Servers } from "./servers.js";

/**
 * Every event type the table's scripts use. An EventSource has no catch-all listener: a
 * reader listens for each of these (and `message`), so that an event dispatched with the
 * wrong type, or one that should not be dispatched at all, is seen.
 */
export const eventTypes = ["progress", "x", "reset"] as const;
type EventType = (typeof eventTypes)[number];

/** One event as an EventSource dispatches it: [type, lastEventId, data]. */
type Dispatched = [type: "message" | EventType, lastEventId: string, data: string];

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

/** Starts the scripted backend and the real BFF in front of it. */
export async function startScriptedBff(): Promise<ScriptedBff> {
  const backend = await startScriptedBackend();
  let bff: Servers;
  try {
    bff = await startBffAgainst(backend.url);
  } catch (error) {
    await backend.close();
    throw error;
  }
  return {
    bff,
    script: (code, script) => backend.script(code, script),
    stop: async () => {
      await bff.stop();
      await backend.close();
    },
  };
}

/**
 * The demo's named scenarios: each scripts an export (the create request's scenario
 * fields, docs/api.md "Scenarios") or the relay (the client's `fault` option, "Relay
 * faults") so a person sees every case a download UI must handle. They need the
 * backend and the BFF to run with SCENARIOS=on (`make demo` and Compose do). The
 * browser tests (test/scenarios-browser.test.ts) read the same table.
 */
import type { ExportRequest, RelayFault } from "../src/index.js";

/** Scenario fields of a create request: what a scenario adds to the form's rows and duration. */
type ScenarioFields = Omit<ExportRequest, "rows" | "filename">;

export interface Scenario {
  readonly label: string;
  /** What the page shows, in a sentence under the select. */
  readonly note: string;
  readonly fields: ScenarioFields;
  /** The stream fault instead of request fields (SSE modes only). */
  readonly fault?: RelayFault;
}

export const SCENARIOS = {
  normal: { label: "normal", note: "Rows and duration as set above.", fields: {} },
  "slow-start": {
    label: "slow start",
    note: "Stays PENDING for 3 s before the first row.",
    fields: { startDelayMs: 3_000 },
  },
  stall: {
    label: "stall",
    note: "Stops at 40 % for 4 s; the stream stays open (heartbeats), then goes on.",
    fields: { stallAt: 40, stallMs: 4_000 },
  },
  "fails-at-60": {
    label: "fails at 60 %",
    note: "FAILED at 60 % with the code QUOTA_EXCEEDED.",
    fields: { failAt: 60, errorCode: "QUOTA_EXCEEDED" },
  },
  "relay-gives-up": {
    label: "relay gives up",
    note: "Runs 8 s; the BFF relays for 1 s, then acts as if the backend were lost and gives up 3 s later: ERROR UPSTREAM_UNAVAILABLE. SSE modes only.",
    // Longer than the fault: the export is still running when the relay gives up.
    fields: { durationMs: 8_000 },
    fault: { kind: "relay-gives-up", faultAfterMs: 1_000, giveUpMs: 3_000 },
  },
  "file-expires": {
    label: "file expires",
    note: "Completes; the file is gone 5 s later: the Download link then shows 410 GONE.",
    fields: { expireAfterMs: 5_000 },
  },
  "rows-per-second": {
    label: "rows per second",
    note: "Paced at 1,000 rows a second instead of the duration.",
    fields: { rowsPerSecond: 1_000 },
  },
  "stream-drops": {
    label: "stream drops",
    note: "Runs 6 s; at 40 % the server ends the event stream (SSE modes): the page waits for a connection, then resumes by Last-Event-ID and goes on, nothing shown twice.",
    // Longer than the BFF's 2–3 s reconnect delay after the cut at 40 %: the page is
    // seen to resume a running export.
    fields: { durationMs: 6_000, dropStreamAt: 40 },
  },
} as const satisfies Record<string, Scenario>;

export type ScenarioName = keyof typeof SCENARIOS;

/** The fault every "relay gives up" client asks for. */
export const RELAY_FAULT: RelayFault = SCENARIOS["relay-gives-up"].fault;

export function isScenarioName(name: string): name is ScenarioName {
  return Object.hasOwn(SCENARIOS, name);
}

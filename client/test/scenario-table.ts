/**
 * The documented timelines of the scripted scenarios (docs/api.md "Scenarios"), as one
 * table of requests and the properties a UI may rely on. The same rows and the same
 * assertions run against the testing kit's fake server (scenarios-fake.test.ts, fake
 * timers) and against the real BFF + backend (scenarios-real.test.ts), both through the
 * client library: the fake behaves like the stack wherever the table looks.
 */
import { expect } from "vitest";
import type { ConnectionState, ExportClient, ExportRequest, Job, JobStatus } from "../src/index.js";

/** What one run of a scenario saw through `client.subscribe`. */
export interface Trace {
  readonly request: ExportRequest;
  /** `start`'s answer, then every snapshot the listener got (from the first newer one). */
  readonly snapshots: readonly Job[];
  /** What `client.cancel` answered, for the row that cancels. */
  readonly cancelled: Job | undefined;
  /** The file's HTTP status right after completion and once `expiresAt` has passed. */
  readonly fileStatus: { readonly before: number; readonly after: number } | undefined;
  /** The connection states `onConnection` reported, in order. */
  readonly connection: readonly ConnectionState[];
  /** The event stream requests the client's EventSource made (reconnects too), in order. */
  readonly streams: readonly StreamRequest[];
}

/** One event stream request: its URL and the Last-Event-ID it came with (none: undefined). */
export interface StreamRequest {
  readonly url: string;
  readonly lastEventId: string | undefined;
}

/** How a test reaches the server and time: the fake with fake timers, or the real stack. */
export interface Driver {
  readonly client: ExportClient;
  /** Resolves once `done()` holds; fails after `timeoutMs` of (fake or real) time. */
  until(done: () => boolean, what: string, timeoutMs: number): Promise<void>;
  /** The HTTP status of a GET of the job's file. */
  fileStatus(job: Job): Promise<number>;
  /** The event stream requests the driver's client made so far. */
  streams(): readonly StreamRequest[];
}

export interface ScenarioRow {
  readonly name: string;
  readonly request: ExportRequest;
  /** Cancel once a snapshot shows at least this progress. */
  readonly cancelAtProgress?: number;
  /** Check the file's status before and after its `expiresAt`. */
  readonly checkExpiry?: boolean;
  /** The statuses in order, each run of equal ones counted once. */
  readonly statuses: readonly JobStatus[];
  /** The row's own properties, beyond those every trace has ({@link checkCommon}). */
  check(trace: Trace, last: Job): void;
}

/** Slack above a lower time bound that a loaded machine may add (upper bounds only). */
const SLACK_MS = 1_500;

const ms = (iso: string): number => Date.parse(iso);
const sinceCreate = (job: Job): number => ms(job.updatedAt) - ms(job.createdAt);
/** The job's last change came `scheduledMs` after its create: not before, not much later. */
function endedAfter(job: Job, scheduledMs: number): void {
  expect(sinceCreate(job)).toBeGreaterThanOrEqual(scheduledMs);
  expect(sinceCreate(job)).toBeLessThan(scheduledMs + SLACK_MS);
}

export const SCENARIOS: readonly ScenarioRow[] = [
  {
    name: "plain: PENDING, progress, COMPLETED with its file",
    request: { rows: 2000, durationMs: 1000 },
    statuses: ["PENDING", "IN_PROGRESS", "COMPLETED"],
    check: (trace, last) => {
      endedAfter(last, 1000);
      expect(last.file?.name).toBe(`export-${last.code.slice(0, 8)}.csv`);
      expect(last.file?.url).toBe(`/api/exports/${last.code}/file`);
      expect(inProgress(trace).length, "several progress events").toBeGreaterThanOrEqual(3);
    },
  },
  {
    name: "failAt 60 with errorCode: FAILED with that code, progress never past 60",
    request: { rows: 1000, durationMs: 1000, failAt: 60, errorCode: "QUOTA_EXCEEDED" },
    statuses: ["PENDING", "IN_PROGRESS", "FAILED"],
    check: (trace, last) => {
      expect(last.error?.code).toBe("QUOTA_EXCEEDED");
      for (const job of trace.snapshots) expect(job.progress).toBeLessThanOrEqual(60);
      expect(last.progress).toBeGreaterThanOrEqual(Math.max(...inProgress(trace).map((job) => job.progress)));
      expect(last.rowsDone).toBeLessThan(last.rowsTotal);
      // Paced as the export would have been: 60 % of its second.
      expect(sinceCreate(last)).toBeGreaterThanOrEqual(600);
    },
  },
  {
    name: "startDelayMs: PENDING lasts at least the delay",
    request: { rows: 1000, durationMs: 500, startDelayMs: 1500 },
    statuses: ["PENDING", "IN_PROGRESS", "COMPLETED"],
    check: (trace, last) => {
      const started = trace.snapshots.find((job) => job.status !== "PENDING");
      expect(started && sinceCreate(started)).toBeGreaterThanOrEqual(1500);
      endedAfter(last, 2000);
    },
  },
  {
    name: "stallAt 50 for stallMs: a gap of at least stallMs across 50 %",
    request: { rows: 1000, durationMs: 1000, stallAt: 50, stallMs: 1500 },
    statuses: ["PENDING", "IN_PROGRESS", "COMPLETED"],
    check: (trace, last) => {
      const running = trace.snapshots.filter((job) => job.status !== "PENDING");
      const gaps = running.slice(1).map((after, i) => ({ before: running[i] as Job, after }));
      const stall = gaps.find(({ before, after }) => ms(after.updatedAt) - ms(before.updatedAt) >= 1500);
      expect(stall, `no gap of 1500 ms in ${running.map((job) => `${job.progress}@${sinceCreate(job)}`).join(" ")}`).toBeDefined();
      expect(stall?.before.progress).toBeLessThanOrEqual(50);
      expect(stall?.after.progress).toBeGreaterThan(50);
      endedAfter(last, 2500);
    },
  },
  {
    name: "rowsPerSecond: paced by rows / rowsPerSecond",
    request: { rows: 3000, rowsPerSecond: 2000 },
    statuses: ["PENDING", "IN_PROGRESS", "COMPLETED"],
    check: (trace, last) => {
      endedAfter(last, 1500);
      expect(inProgress(trace).length, "several progress events").toBeGreaterThanOrEqual(3);
    },
  },
  {
    name: "expireAfterMs: expiresAt is that long after completion, then the file is 410",
    request: { rows: 500, durationMs: 200, expireAfterMs: 1500 },
    checkExpiry: true,
    statuses: ["PENDING", "IN_PROGRESS", "COMPLETED"],
    check: (trace, last) => {
      const expiresAt = ms(last.file?.expiresAt ?? "");
      // The backend dates the expiry and the snapshot a few µs apart.
      expect(Math.abs(expiresAt - ms(last.updatedAt) - 1500)).toBeLessThanOrEqual(5);
      expect(trace.fileStatus).toEqual({ before: 200, after: 410 });
    },
  },
  {
    name: "cancel mid-way: CANCELLED where it was, nothing after",
    request: { rows: 2000, durationMs: 3000 },
    cancelAtProgress: 30,
    statuses: ["PENDING", "IN_PROGRESS", "CANCELLED"],
    check: (trace, last) => {
      expect(trace.cancelled).toEqual(last);
      expect(last.progress).toBeGreaterThanOrEqual(30);
      expect(last.progress).toBeLessThan(100);
      expect(last.file).toBeUndefined();
      expect(sinceCreate(last)).toBeLessThan(3000);
    },
  },
  {
    // Cut at about 1 s; the reconnect, after the BFF's 2–3 s retry, finds the export still
    // running: the resumed stream carries it on past 20 % and is not cut again.
    name: "dropStreamAt 20: the stream is cut once right after the first snapshot at or past 20 %; one reconnect with Last-Event-ID, no snapshot twice",
    request: { rows: 1000, durationMs: 5000, dropStreamAt: 20 },
    statuses: ["PENDING", "IN_PROGRESS", "COMPLETED"],
    check: (trace) => {
      const cut = trace.snapshots.find((job) => job.progress >= 20);
      expect(cut?.status).toBe("IN_PROGRESS");
      // One reconnect, resuming after the cut snapshot (per-job ids are seqs).
      expect(trace.streams.map((each) => each.lastEventId)).toEqual([undefined, String(cut?.seq)]);
      // Whether the first `connecting` is seen depends on how fast the stream opens.
      expect(trace.connection.slice(trace.connection.indexOf("open"))).toEqual(["open", "connecting", "open"]);
      const seqs = trace.snapshots.map((job) => job.seq);
      expect(new Set(seqs).size, `seqs ${seqs.join(" ")}`).toBe(seqs.length);
    },
  },
];

function inProgress(trace: Trace): Job[] {
  return trace.snapshots.filter((job) => job.status === "IN_PROGRESS" && job.progress > 0);
}

/** Starts the row's export and records what the client sees until it ends. */
export async function record(driver: Driver, row: ScenarioRow): Promise<Trace> {
  const { client } = driver;
  const started = await client.start(row.request);
  const snapshots: Job[] = [];
  const connection: ConnectionState[] = [];
  let ended: Job | undefined;
  let failed: Error | undefined;
  let cancel: Promise<Job | undefined> | undefined;
  const stop = client.subscribe(started.code, (event) => {
    if (event.type === "error") {
      failed = event.error;
      return;
    }
    snapshots.push(event.job);
    if (["COMPLETED", "FAILED", "CANCELLED"].includes(event.job.status)) ended = event.job;
    if (row.cancelAtProgress !== undefined && !cancel && event.job.progress >= row.cancelAtProgress) {
      cancel = client.cancel(started.code);
    }
  }, { onConnection: (state) => connection.push(state) });
  try {
    await driver.until(() => ended !== undefined || failed !== undefined, `${row.name}: the end`, 30_000);
  } finally {
    stop();
  }
  if (failed) throw failed;
  // Per job, the listener starts from the stream's first snapshot, which may be newer.
  if ((snapshots[0]?.seq ?? 0) > started.seq) snapshots.unshift(started);
  const last = ended as Job;
  let fileStatus: Trace["fileStatus"];
  if (row.checkExpiry) {
    const before = await driver.fileStatus(last);
    const expiresAt = ms(last.file?.expiresAt ?? "");
    if (!(expiresAt - Date.now() < 10_000)) throw new Error(`${row.name}: expiresAt ${last.file?.expiresAt} is not within 10 s`);
    await driver.until(() => Date.now() > expiresAt + 50, `${row.name}: past expiresAt`, 30_000);
    fileStatus = { before, after: await driver.fileStatus(last) };
  }
  return { request: row.request, snapshots, cancelled: await cancel, fileStatus, connection, streams: [...driver.streams()] };
}

/** Everything the row documents, on a recorded trace. */
export function checkScenario(row: ScenarioRow, trace: Trace): void {
  const last = trace.snapshots.at(-1) as Job;
  const statuses = trace.snapshots.map((job) => job.status).filter((status, i, all) => status !== all[i - 1]);
  expect(statuses).toEqual(row.statuses);
  checkCommon(trace, last);
  row.check(trace, last);
}

/** What every trace shows: the job's shape, seq, progress and its terminal snapshot. */
function checkCommon(trace: Trace, last: Job): void {
  const first = trace.snapshots[0] as Job;
  for (const [i, job] of trace.snapshots.entries()) {
    const previous = trace.snapshots[i - 1];
    expect(job.code).toBe(first.code);
    expect(job.createdAt).toBe(first.createdAt);
    expect(job.rowsTotal).toBe(trace.request.rows);
    expect(job.rowsDone).toBeLessThanOrEqual(job.rowsTotal);
    if (!previous) continue;
    expect(job.seq, "seq strictly increasing").toBeGreaterThan(previous.seq);
    expect(job.progress, "progress never goes back").toBeGreaterThanOrEqual(previous.progress);
    expect(ms(job.updatedAt)).toBeGreaterThanOrEqual(ms(previous.updatedAt));
  }
  expect(first).toMatchObject({ status: "PENDING", progress: 0, rowsDone: 0, seq: 1 });
  if (last.status === "COMPLETED") {
    expect(last).toMatchObject({ progress: 100, rowsDone: trace.request.rows });
    expect(last.file).toEqual({
      name: expect.stringMatching(/\.csv$/),
      size: expect.any(Number),
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      contentType: "text/csv; charset=utf-8",
      url: `/api/exports/${last.code}/file`,
      expiresAt: expect.any(String),
    });
    expect(last.error).toBeUndefined();
  }
  if (last.status === "FAILED") {
    expect(last.error).toEqual({ code: expect.stringMatching(/^[A-Z][A-Z0-9_]*$/), message: expect.any(String) });
    expect(last.file).toBeUndefined();
  }
}

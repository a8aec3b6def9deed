/**
 * The states an export goes through, derived from its create request the way the backend
 * derives them (backend/internal/worker/pool.go, writeFile): the same chunks, the same
 * pacing, the same progress throttle, the same scenario rules. Pure: times are
 * milliseconds after the create, so the fake server can play them with timers.
 */
import type { ErrorBody, ExportRequest, Job, JobStatus } from "../types.js";

/** One change of a job, `at` ms after its create. */
export interface TimelineStep {
  readonly at: number;
  readonly status: JobStatus;
  readonly progress: number;
  readonly rowsDone: number;
  readonly error?: ErrorBody;
}

/** The backend's limits (backend/internal/job/request.go). */
const MAX_ROWS = 10_000_000;
const MAX_MS = 3_600_000;

/**
 * Checks `request` as the backend does; returns the field and reason of the first
 * problem (the server's 422 VALIDATION_FAILED), or undefined.
 */
export function validationProblem(request: ExportRequest): string | undefined {
  const r = request;
  const int = (v: number | undefined, min: number, max: number): boolean => v === undefined || (Number.isInteger(v) && v >= min && v <= max);
  const checks: [boolean, string][] = [
    [Number.isInteger(r.rows) && r.rows >= 1 && r.rows <= MAX_ROWS, "rows: must be between 1 and 10000000"],
    [int(r.durationMs, 0, MAX_MS), "durationMs: must be between 0 and 3600000"],
    [r.filename === undefined || new TextEncoder().encode(r.filename).length <= 200, "filename: must be at most 200 bytes"],
    [int(r.failAt, 1, 99), "failAt: must be between 1 and 99"],
    [r.errorCode === undefined || r.failAt !== undefined, "errorCode: needs failAt"],
    [r.errorCode === undefined || /^[A-Z][A-Z0-9_]{0,63}$/.test(r.errorCode), "errorCode: must be 1 to 64 of A-Z, 0-9 and _, starting with a letter"],
    [!r.stallAt === !r.stallMs, "stallAt: stallAt and stallMs go together"],
    [int(r.rowsPerSecond, 0, MAX_ROWS), "rowsPerSecond: must be between 1 and 10000000"],
    [!(r.rowsPerSecond && r.durationMs), "rowsPerSecond: give either durationMs or rowsPerSecond"],
    [durationMs(r) <= MAX_MS, "rowsPerSecond: rows / rowsPerSecond must be at most 3600 seconds"],
    [int(r.stallAt, 0, 99), "stallAt: must be between 1 and 99"],
    [int(r.dropStreamAt, 0, 99), "dropStreamAt: must be between 1 and 99"],
    [int(r.startDelayMs, 0, MAX_MS), "startDelayMs: must be between 1 and 3600000"],
    [int(r.stallMs, 0, MAX_MS), "stallMs: must be between 1 and 3600000"],
    [int(r.expireAfterMs, 0, MAX_MS), "expireAfterMs: must be between 1 and 3600000"],
  ];
  return checks.find(([ok]) => !ok)?.[1];
}

/** True when `request` uses a scenario field (refused unless scenarios are on). */
export function isScripted(r: ExportRequest): boolean {
  return [r.failAt, r.errorCode, r.startDelayMs, r.stallAt, r.stallMs, r.dropStreamAt, r.expireAfterMs, r.rowsPerSecond].some((v) => v !== undefined && v !== 0 && v !== "");
}

/** How long the generation is paced over: `durationMs`, or the rows at `rowsPerSecond`. */
function durationMs(r: ExportRequest): number {
  return r.rowsPerSecond ? (r.rows * 1000) / r.rowsPerSecond : (r.durationMs ?? 0);
}

/**
 * Every change after the PENDING snapshot of the create, in order: IN_PROGRESS once
 * `startDelayMs` has passed (the fake has a free worker at once), progress at most once
 * per `progressIntervalMs` of the schedule and only on a change of the whole percent,
 * then COMPLETED or, with `failAt`, FAILED at the first chunk at or past it.
 */
export function timeline(r: ExportRequest, progressIntervalMs: number): TimelineStep[] {
  const rows = r.rows;
  const total = durationMs(r);
  const chunks = Math.min(Math.max(Math.trunc(total / 50), Math.trunc(rows / 50_000), 1), rows);
  let start = r.startDelayMs ?? 0;
  const steps: TimelineStep[] = [{ at: start, status: "IN_PROGRESS", progress: 0, rowsDone: 0 }];
  let now = start;
  let reported = 0;
  let lastDeadline = -Infinity;
  let stalled = !r.stallAt;
  for (let k = 0; k < chunks; k++) {
    const from = Math.trunc((k * rows) / chunks);
    const to = Math.trunc(((k + 1) * rows) / chunks);
    const fromPct = Math.trunc((from * 100) / rows);
    if (r.failAt !== undefined && fromPct >= r.failAt) {
      const error = { code: r.errorCode || "GENERATION_FAILED", message: `simulated failure at ${r.failAt}%` };
      steps.push({ at: now, status: "FAILED", progress: fromPct, rowsDone: from, error });
      return steps;
    }
    if (!stalled && fromPct >= (r.stallAt ?? 0)) {
      // Progress stops here for stallMs: the rest of the schedule moves that much later.
      stalled = true;
      start += r.stallMs ?? 0;
    }
    now = start + Math.trunc((total * (k + 1)) / chunks);
    const pct = Math.trunc((to * 100) / rows);
    if (pct !== reported && to < rows && now - lastDeadline >= progressIntervalMs) {
      reported = pct;
      lastDeadline = now;
      steps.push({ at: now, status: "IN_PROGRESS", progress: pct, rowsDone: to });
    }
  }
  steps.push({ at: now, status: "COMPLETED", progress: 100, rowsDone: rows });
  return steps;
}

/**
 * Whether a stream that carried a snapshot of the job at progress `before` (-1: none yet)
 * is cut after carrying `job`: the dropStreamAt scenario cuts each stream that sees the
 * job cross it, once (backend job.CutsStream); a resumed stream starts past it.
 */
export function cutsStream(job: Job, before: number, dropStreamAt: number | undefined): boolean {
  return !!dropStreamAt && job.status === "IN_PROGRESS" && before >= 0 && before < dropStreamAt && job.progress >= dropStreamAt;
}

/** The name the download is offered under, made safe as the backend does (job.FileName). */
export function fileName(requested: string | undefined, code: string): string {
  // eslint-disable-next-line no-control-regex
  let name = (requested ?? "").trim().replace(/[/\\"'\u0000-\u001f\u007f-\u009f]/g, "_");
  name = name.replace(/^\.+|\.+$/g, "");
  if (name === "") return `export-${code.slice(0, 8)}.csv`;
  return name.toLowerCase().endsWith(".csv") ? name : `${name}.csv`;
}
